"""Stored XSS (CVE-2024-26152, CVE-2025-25296, CVE-2026-22033 were stored XSS in peers' label
and annotator pages): a corpus of payloads is stored where users can put text -- imported
texts, a skipped row's report, label names, project name and instructions, usernames and
first names, a bonus's reason, a pay policy's note, an import's file name -- and every page
that shows them is opened in headless Chromium: the annotator's labeling page (every text
shown), the home and earnings pages, the Django admin (changelists and change forms, as a
project admin, as an auditor and as a superuser), the auditor's view of an annotator's
earnings, and the browsable API.

Two passes. With the page's CSP ignored (bypass_csp), escaping alone must hold: no dialog,
no flag set by a payload, no event-handler attribute, javascript: URL or srcdoc from the
data in the DOM. With the CSP enforced, the same, and the console shows no script the CSP
had to refuse (which would mean the payload reached the DOM and only the CSP stopped it).
"""

import re
from datetime import timedelta
from decimal import Decimal
from io import BytesIO
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from annotation import services
from annotation.imports import formats, jobs, runs
from annotation.models import ImportBatch, Membership
from labor_ledger import services as ledger_services
from tests.factories import UserFactory, add_member
from tests.support.browser import open_as, wait_all_saved, wait_images_settled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def js(tag: str) -> str:
    return f"window.__xss='{tag}',alert('{tag}')"


def payloads(tag: str) -> list[str]:
    """The same attack in the contexts a template or script could put data in: element
    content, attribute values (both quotes), a script block, a URL, srcdoc, mXSS."""
    return [
        f"<script>{js(tag + 'a')}</script>",
        f"<img src=x onerror={js(tag + 'b')}>",
        f'"><svg onload={js(tag + "c")}>',
        f"'><details open ontoggle={js(tag + 'd')}>",
        f"</script><script>{js(tag + 'e')}</script>",
        f"<a href=javascript:{js(tag + 'f')}>x</a>",
        f"<iframe srcdoc=\"<img src=x onerror=parent.alert('{tag}g')>\"></iframe>",
        f"<math><mtext><table><mglyph><style><img src=x onerror={js(tag + 'h')}>",
        f"\u2028\u2029</textarea></title><img src=x onerror={js(tag + 'i')}>",
    ]


FIND_INJECTED = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      const v = a.value.toLowerCase();
      if ((a.name.startsWith('on') && v.includes('xss')) || a.name === 'srcdoc' ||
          (['href', 'src', 'action', 'formaction'].includes(a.name) && v.trim().startsWith('javascript:')))
        bad.push(el.tagName + ' ' + a.name + '=' + a.value.slice(0, 80));
    }
    const runs = el.tagName === 'SCRIPT' && (!el.type || /javascript|module/i.test(el.type));  // not JSON data
    if (runs && el.textContent.includes('__xss')) bad.push('SCRIPT ' + el.textContent.slice(0, 80));
  }
  return {bad: bad, flag: window.__xss || null};
}"""


@pytest.fixture
def stored(db):
    """A project whose every user-supplied string is a payload."""
    User = get_user_model()
    # Usernames are validated on every form (no < or "), so these come in through the ORM:
    # the pages must not rely on that validation.
    admin = User.objects.create_user(
        username="adm<img src=x onerror=alert('un1')>", password="unused-pw-1", is_staff=True
    )
    admin.first_name = payloads("fn")[1][:150]
    admin.last_name = payloads("ln")[0][:150]
    admin.save()
    project = services.project_create(
        name=payloads("pn")[2][:200],
        labels=[payloads("lb")[i] for i in (0, 1, 3, 4, 7)],
        instructions="\n\n".join(payloads("in")),
        created_by=admin,
    )
    annotator = add_member(
        project,
        Membership.Role.ANNOTATOR,
        User.objects.create_user(username="ann\"'><svg onload=alert('un2')>", password="unused-pw-2"),
    )
    annotator.first_name = payloads("af")[1][:150]
    annotator.save()
    auditor = add_member(project, Membership.Role.AUDITOR, UserFactory(username="auditor-xss", is_staff=True))
    superuser = User.objects.create_superuser("root-xss", password="unused-pw-3")

    # imported texts: one row per payload, plus a row skipped for an unknown label whose
    # value (a payload) ends up in the import report
    rows = ["text,label"] + ['"' + p.replace('"', '""') + f' text {i}",' for i, p in enumerate(payloads("tx"))]
    rows.append('"a row with a bad label",' + '"' + payloads("rp")[1].replace('"', '""') + '"')
    options = formats.import_options(
        source_name="x.csv", file_format="csv", text_column="text", label_column="label", has_header=True
    )
    batch, _ = jobs.import_batch_create(
        project=project, created_by=admin, source_name=payloads("fl")[1][:200] + ".csv", options=options
    )
    batch = runs.import_run(batch=batch, stream=BytesIO("\n".join(rows).encode()))
    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert batch.rows_imported == len(payloads("tx")) and batch.report

    start = timezone.now() - timedelta(hours=1)
    ledger_services.pay_policy_create(
        project=project,
        created_by=admin,
        piece_rate=Decimal("0.10"),
        floor_hourly_rate=Decimal("10"),
        note=payloads("nt")[0],
        effective_from=start,
        now=start,
    )
    # a little work, a reviewed label and a bonus with a payload reason
    for _ in range(2):
        attempt = services.claim_next(project=project, annotator=annotator)
        services.annotation_submit(attempt_id=attempt.pk, annotator=annotator, label_ids=[project.labels.first().pk])
    ledger_services.manual_entry_create(
        project=project,
        annotator=annotator,
        kind="bonus",
        amount=Decimal("1.00"),
        reason=payloads("rs")[2],
        actor=admin,
        idempotency_key="xss-bonus",
    )
    return {"project": project, "admin": admin, "annotator": annotator, "auditor": auditor, "root": superuser}


class Watch:
    """Everything a payload could do on a page: dialogs, the flag, the DOM, CSP refusals."""

    def __init__(self, page):
        self.page = page
        self.dialogs, self.refusals, self.findings = [], [], []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on(
            "console",
            lambda m: (
                self.refusals.append(m.text)
                if "Content Security Policy" in m.text and re.search(r"script|event handler|javascript", m.text, re.I)
                else None
            ),
        )

    def check(self, where: str):
        wait_images_settled(self.page)  # broken images have fired their onerror
        result = self.page.evaluate(FIND_INJECTED)
        if result["flag"] or result["bad"]:
            self.findings.append(f"{where}: flag={result['flag']} {result['bad'][:3]}")


def open_watched(browser, live_server, user, *, bypass_csp):
    context, page = open_as(browser, live_server.url, user, bypass_csp=bypass_csp)
    return context, page, Watch(page)


def label_every_text(page, watch):
    """The annotator's page shows each imported text in turn (submitted with key 1)."""
    page.goto("/projects/" + watch.slug + "/label/")
    watch.check("label page")
    if watch.findings or watch.dialogs:
        return 0  # reported with the rest
    seen = 0
    for _ in range(30):
        text = page.locator("#text")
        expect(text).to_have_attribute("aria-busy", "false", timeout=15000)
        attempt = text.get_attribute("data-attempt-id")
        watch.check(f"label page, text {seen}")
        if not attempt:
            break
        seen += 1
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        expect(text).not_to_have_attribute("data-attempt-id", attempt, timeout=15000)
    wait_all_saved(page, timeout=15000)  # the caller leaves the page next
    return seen


@pytest.mark.parametrize("bypass_csp", [True, False], ids=["escaping-alone", "with-csp"])
def test_stored_payloads_never_run(browser, live_server, stored, bypass_csp):
    project, annotator = stored["project"], stored["annotator"]
    slug = project.slug
    visits = {
        "annotator": (annotator, ["/", "/earnings/", f"/earnings/{slug}/", f"/api/projects/{slug}/?format=api"]),
        "admin": (
            stored["admin"],
            [
                "/",
                f"/earnings/{slug}/?annotator={quote(annotator.username)}",
                # project admins work in the console; the Django admin is for superusers
                f"/projects/{slug}/",
                f"/projects/{slug}/settings/",
                f"/projects/{slug}/members/",
                f"/projects/{slug}/import/",
                f"/projects/{slug}/models/",
                f"/projects/{slug}/models/accept/",
                f"/projects/{slug}/pay/",
                f"/projects/{slug}/ledger/",
                f"/api/projects/{slug}/examples/?format=api",
                f"/api/projects/{slug}/members/?format=api",
                f"/api/projects/{slug}/ledger/entries/?format=api",
                f"/api/projects/{slug}/pay-policies/?format=api",
                f"/api/projects/{slug}/imports/?format=api",
            ],
        ),
        "auditor": (
            stored["auditor"],
            [
                "/",
                f"/earnings/{slug}/?annotator={quote(annotator.username)}",
                f"/projects/{slug}/",
                f"/projects/{slug}/settings/",
                f"/projects/{slug}/ledger/",
            ],
        ),
        "superuser": (
            stored["root"],
            [
                "/admin/",
                "/admin/annotation/project/",
                f"/admin/annotation/project/{project.pk}/change/",
                f"/admin/annotation/project/{project.pk}/import/",
                "/admin/annotation/label/",
                "/admin/annotation/membership/",
                "/admin/annotation/example/",
                "/admin/annotation/attempt/",
                "/admin/annotation/annotation/",
                "/admin/annotation/importbatch/",
                f"/admin/annotation/importbatch/{ImportBatch.objects.get(project=project).pk}/change/",
                "/admin/auth/user/",
                f"/admin/auth/user/{annotator.pk}/change/",
                "/admin/labor_ledger/ledgerentry/",
                "/admin/labor_ledger/paypolicy/",
                "/admin/labor_ledger/balance/",
            ],
        ),
    }
    findings, dialogs, refusals, pages, shown = [], [], [], 0, 0
    for who, (user, urls) in visits.items():
        context, page, watch = open_watched(browser, live_server, user, bypass_csp=bypass_csp)
        watch.slug = slug
        for url in urls:
            response = page.goto(url)
            assert response.status == 200, (who, url, response.status)
            watch.check(f"{who} {url}")
            pages += 1
        if who == "annotator":
            shown = label_every_text(page, watch)
            pages += shown
            # the earnings page again, now with this work on it
            page.goto(f"/earnings/{slug}/")
            watch.check("annotator earnings after labeling")
        findings += watch.findings
        dialogs += watch.dialogs
        refusals += watch.refusals
        context.close()
    assert not dialogs, f"payloads ran: {dialogs}"
    assert not findings, "payloads reached the DOM:\n" + "\n".join(findings)
    assert not refusals, "the CSP had to refuse injected script:\n" + "\n".join(refusals[:10])
    assert shown >= len(payloads("tx")) - 2, shown  # every imported text was shown (two labeled before)
    assert pages > 35
