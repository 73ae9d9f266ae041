"""The database goes away while an annotator labels in the browser (make test-faults).

gunicorn reaches PostgreSQL through a TCP proxy the test cuts for a few seconds. The
labeling page must tell the annotator that their answers could not be saved yet, keep them,
and send them again with the same idempotency keys once the database is back: every label
given is stored once and paid once.
"""

import mimetypes
import re

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.db.models import Count
from django.test import Client
from playwright.sync_api import expect

from annotation.models import Annotation
from labor_ledger.models import LedgerEntry

from .harness import Gunicorn, TcpProxy, env_for
from .toy import ledger_totals, make_toy_project

pytestmark = [pytest.mark.faults, pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def serve_static(route):
    """gunicorn runs without collectstatic here: the browser gets /static/ from the sources."""
    relative = route.request.url.split("/static/", 1)[1].split("?")[0]
    path = finders.find(relative)
    if not path:
        route.fulfill(status=404, body="")
        return
    with open(path, "rb") as fh:
        route.fulfill(status=200, body=fh.read(), content_type=mimetypes.guess_type(path)[0] or "text/plain")


def test_the_page_tells_the_annotator_and_resends_with_the_same_key(
    browser, admin_user, toy, model_store, tmp_path, settings
):
    project, annotator = make_toy_project(admin_user, toy, labeled=0)
    db = settings.DATABASES["default"]
    proxy = TcpProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))
    url = f"postgres://{db.get('USER') or 'postgres'}@127.0.0.1:{proxy.port}/{db['NAME']}"
    web = Gunicorn(tmp_path, env_for(DATABASE_URL=url, CACHE_KEY_PREFIX="security-faults"), workers=1, threads=4)
    client = Client()
    client.force_login(annotator)
    context = browser.new_context(base_url=web.url)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": web.url}])
    page = context.new_page()
    page.route("**/static/**", serve_static)
    submits = []
    page.on(
        "request",
        lambda r: submits.append(r.post_data_json["idempotency_key"]) if r.url.endswith("/submit/") else None,
    )
    try:
        page.goto(f"/projects/{project.slug}/label/")
        text = page.locator("#text")

        def label_current():
            expect(text).to_have_attribute("data-attempt-id", re.compile(r"^\d+$"), timeout=15000)
            expect(page.locator("#labeler")).to_have_attribute("data-ahead", re.compile(r"^[1-9]"), timeout=15000)
            shown = text.get_attribute("data-attempt-id")
            page.keyboard.press("1")
            page.keyboard.press("Enter")
            expect(text).not_to_have_attribute("data-attempt-id", shown, timeout=15000)

        label_current()
        expect(page.locator("#sync")).to_be_hidden(timeout=15000)
        label_current()
        expect(page.locator("#sync")).to_be_hidden(timeout=15000)
        expect(page.locator("#labeler")).to_have_attribute("data-ahead", "1", timeout=15000)  # one prefetched

        proxy.cut()  # the database is gone
        expect(text).to_have_attribute("data-attempt-id", re.compile(r"^\d+$"))
        page.keyboard.press("1")
        page.keyboard.press("Enter")  # the prefetched text comes up at once; its answer cannot be saved
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("Could not save your label", timeout=15000)
        expect(alert).to_contain_text("will be sent again")
        expect(page.locator("#sync")).to_be_visible()
        page.keyboard.press("1")
        page.keyboard.press("Enter")  # and the one behind it, answered offline too
        page.wait_for_timeout(4000)  # (not time.sleep: Playwright delivers events while it waits)
        tried_during_outage = len(submits) - 2

        proxy.restore()  # the database is back: the kept answers go out, same keys
        expect(page.locator("#sync")).to_be_hidden(timeout=60000)
        label_current()
        expect(page.locator("#sync")).to_be_hidden(timeout=30000)
        page.wait_for_timeout(300)
    finally:
        context.close()
        web.stop()
        proxy.close()

    keys = set(submits)
    assert tried_during_outage >= 2 and len(submits) > len(keys), submits  # answers were retried...
    stored = dict(Annotation.objects.filter(annotator=annotator).values_list("idempotency_key", "id"))
    assert set(stored) == keys and len(keys) == 5  # ...with their first key, each stored once
    pay = (
        LedgerEntry.objects.filter(annotation__annotator=annotator, kind=LedgerEntry.Kind.PIECE_PAY)
        .values("annotation_id")
        .annotate(n=Count("id"))
    )
    assert sorted(row["n"] for row in pay) == [1] * 5
    ledger_totals(project)  # verifies
    # Inside Playwright's sync API the ORM ran on a connection of that context (asgiref Local):
    # close it, or it outlives the test and the test database cannot be dropped.
    connection.close()
