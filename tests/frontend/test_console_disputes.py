"""Time disputes on the pages (issue 14, item 6): filed from the earnings page, decided on the
console's Disputes page, counted on the dashboard and the Labor Card."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from annotation import services as annotation_services
from labor_ledger import services
from labor_ledger.models import LedgerEntry, TimeDispute
from labor_ledger.reports import card as labor_card
from tests.labor_ledger.report_helpers import build_scenario
from tests.support.pages import assert_no_inline_script, nav_keys
from training.hooks import VersionRegistered, version_registered

pytestmark = pytest.mark.django_db


@pytest.fixture
def closed_attempt(project, examples, annotator, admin_user):
    services.pay_policy_create(project=project, created_by=admin_user, floor_hourly_rate=Decimal("12.00"))
    start = timezone.now() - timedelta(minutes=5)
    attempt = annotation_services.claim_next(project=project, annotator=annotator, now=start)
    annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=start)
    annotation_services.attempt_skip(attempt_id=attempt.pk, annotator=annotator, now=start + timedelta(seconds=90))
    attempt.refresh_from_db()
    return attempt


def file_form(client, project, **fields):
    data = {f"dispute-{k}": v for k, v in fields.items()}
    return client.post(reverse("earnings:dispute", args=[project.slug]), data)


def test_an_annotator_files_a_dispute_from_the_earnings_page(client_for, project, annotator, closed_attempt):
    client = client_for(annotator)
    page = client.get(reverse("earnings:project", args=[project.slug]))
    html = page.content.decode()
    assert 'id="dispute-form"' in html and f'value="attempt:{closed_attempt.pk}"' in html
    assert_no_inline_script(html)
    # bad input: the page answers 400 and says why, nothing is filed
    for claimed, why in [("-0:30", "cannot be negative"), ("2:00", "more than this text was on your screen")]:
        answer = file_form(client, project, subject=f"attempt:{closed_attempt.pk}", claimed=claimed, note="n")
        assert answer.status_code == 400 and why in answer.content.decode()
    forged = file_form(client, project, subject="attempt:999999", claimed="1:00", note="n")
    assert forged.status_code == 400 and not TimeDispute.objects.exists()
    # a good one
    answer = file_form(client, project, subject=f"attempt:{closed_attempt.pk}", claimed="1:15", note="long text")
    assert answer.status_code == 302
    page = client.get(answer["Location"]).content.decode()
    assert "filed" in page and "open: waiting for an admin" in page
    dispute = TimeDispute.objects.get()
    assert (dispute.attempt_id, dispute.claimed_seconds) == (closed_attempt.pk, Decimal("75"))


def test_admins_decide_on_the_disputes_page_and_auditors_only_read(
    client_for, project, annotator, auditor, admin_user, closed_attempt
):
    dispute = services.time_dispute_create(
        project=project, annotator=annotator, attempt_id=closed_attempt.pk, claimed_seconds=75, note="long text"
    )
    board = client_for(admin_user).get(reverse("console:dashboard", args=[project.slug])).content.decode()
    assert "1 time dispute to decide" in board and reverse("console:disputes", args=[project.slug]) in board
    url = reverse("console:disputes", args=[project.slug])
    page = client_for(auditor).get(url).content.decode()
    assert "disputes" in nav_keys(page) and "long text" in page and "dispute-decide" not in page
    decide = reverse("console:dispute-decide", args=[project.slug, dispute.pk])
    assert client_for(auditor).post(decide, {"outcome": "accept"}).status_code == 403
    assert client_for(annotator).get(url).status_code == 403
    client = client_for(admin_user)
    page = client.get(url).content.decode()
    assert 'class="inline-form dispute-decide"' in page
    assert_no_inline_script(page)
    # rejecting without a reason is refused with a message; accepting writes the entry
    client.post(decide, {"outcome": "reject"})
    assert "Say why" in client.get(url).content.decode()
    answer = client.post(decide, {"outcome": "accept", "granted": "1:00", "reason": "fair"}, follow=True)
    entry = LedgerEntry.objects.get(kind=LedgerEntry.Kind.ADJUSTMENT)
    assert f"ledger entry #{entry.seq}" in answer.content.decode()
    assert entry.counted_seconds == Decimal("60") and entry.acting_user_id == admin_user.pk
    # decided once
    again = client.post(decide, {"outcome": "reject", "reason": "no"}, follow=True).content.decode()
    assert "already closed" in again
    mine = client_for(annotator).get(reverse("earnings:project", args=[project.slug])).content.decode()
    assert f"accepted by {admin_user.username}: +1:00" in mine


def test_the_labor_card_counts_open_disputes_about_work_before_its_snapshot(client_for):
    cache.clear()
    scenario = build_scenario()
    for v in scenario["versions"].values():
        version_registered.send(VersionRegistered(version_id=v.pk, project_id=v.project_id))
    project, version = scenario["project"], scenario["versions"][2]
    ann = scenario["A"]
    assert labor_card.labor_card(version=version)["open_time_disputes"] == 0
    for day in (version.snapshot_at.date(), version.snapshot_at.date() + timedelta(days=30)):
        TimeDispute.objects.create(
            project=project,
            annotator=ann,
            day=day,
            recorded_seconds=0,
            claimed_seconds=60,
            note="n",
            created_at=version.snapshot_at,
        )
    # the chain head did not move, the cached card did not change, and the count is fresh
    assert labor_card.labor_card(version=version)["open_time_disputes"] == 1
    page = client_for(scenario["auditor"]).get(reverse("labor_card:version", args=[project.slug, 2]))
    assert '<dd id="pay-open-disputes">1</dd>' in page.content.decode()
