"""A dispute end to end in Chromium: filed from the earnings page, accepted on the console's
Disputes page. With TALLY_DISPUTE_SCREENSHOTS=docs it saves docs/console/disputes.png and
docs/labeling/earnings-disputes.png."""

import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from annotation import services as annotation_services
from labor_ledger import services
from labor_ledger.models import LedgerEntry
from tests.support.browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("TALLY_DISPUTE_SCREENSHOTS", "")


def shot(browser_page, path):
    if SHOTS:
        target = Path(SHOTS) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        browser_page.screenshot(path=str(target), full_page=True)


def test_a_dispute_filed_on_the_earnings_page_is_accepted_on_the_console(page, labeling):
    project, annotator = labeling
    admin = project.memberships.get(role="admin").user
    services.pay_policy_create(project=project, created_by=admin, floor_hourly_rate=Decimal("15.00"))
    start = timezone.now() - timedelta(minutes=4)
    attempt = annotation_services.claim_next(project=project, annotator=annotator, now=start)
    annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=start)
    annotation_services.annotation_submit(
        attempt_id=attempt.pk,
        annotator=annotator,
        label_ids=[project.labels.first().pk],
        now=start + timedelta(seconds=150),
    )
    log_in(page, annotator.username)
    page.goto(reverse("earnings:project", args=[project.slug]))
    page.get_by_label("What you contest").select_option(f"attempt:{attempt.pk}")
    page.get_by_label("Active time you claim").fill("2:00")
    page.get_by_label("What happened").fill("A long text: I read it without touching the mouse.")
    page.get_by_role("button", name="File the dispute").click()
    expect(page.locator("tr.time-dispute[data-status=open]")).to_have_count(1)
    shot(page, "labeling/earnings-disputes.png")

    page.get_by_role("button", name="Log out").click()
    log_in(page, admin.username)
    page.goto(reverse("console:disputes", args=[project.slug]))
    row = page.locator("#open-disputes tr.dispute")
    expect(row).to_have_count(1)
    row.get_by_label("Reason").fill("fair: the text is long")
    shot(page, "console/disputes.png")
    row.get_by_role("button", name="Accept").click()
    expect(page.locator("#decided-disputes tr[data-outcome=accepted]")).to_have_count(1)
    entry = LedgerEntry.objects.get(kind=LedgerEntry.Kind.ADJUSTMENT)
    attempt.refresh_from_db()
    granted = Decimal("120") - attempt.active_seconds  # the claim minus what the server credited
    assert entry.counted_seconds == granted and entry.acting_user_id == admin.pk
    assert entry.amount == (granted * Decimal("15.00") / 3600).quantize(Decimal("0.000001"))  # at the floor
    assert page.js_errors == []
