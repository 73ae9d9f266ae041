"""End to end: label through the browser, then find the matching ledger entries on the
annotator's own earnings page (issue #4)."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from annotation.models import Annotation, InstructionReading
from labor_ledger import services as ledger_services
from labor_ledger.models import LedgerEntry
from tests.support.browser import HEARTBEAT_S, label_by_keyboard, log_in, shown_attempt_id, wait_all_saved

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_labels_made_in_the_browser_appear_as_paid_entries_on_the_earnings_page(page, labeling):
    # given: a project that pays 0.25 per text, with a 12.00 hourly floor
    project, annotator = labeling
    ledger_services.pay_policy_create(
        project=project, created_by=project.created_by, piece_rate=Decimal("0.25"), floor_hourly_rate=Decimal("12.00")
    )
    log_in(page, annotator.username)

    # when: the annotator reads the instructions, closes them and labels three texts by keyboard
    page.goto(f"/projects/{project.slug}/label/")
    shown_attempt_id(page)
    page.wait_for_timeout(HEARTBEAT_S * 1000 * 3)
    page.keyboard.press("i")
    for key in ["1", "2", "3"]:
        page.wait_for_timeout(HEARTBEAT_S * 1000 * 2)
        label_by_keyboard(page, key)
    wait_all_saved(page)

    # then: the ledger holds one piece payment per label and the reading time, and the
    # annotator's earnings page shows exactly those entries
    annotations = list(Annotation.objects.filter(project=project, annotator=annotator, status="accepted"))
    assert len(annotations) == 3
    reading = InstructionReading.objects.get(project=project, annotator=annotator)
    assert reading.ended_at is not None and reading.active_seconds > 0

    page.goto(f"/earnings/{project.slug}/")
    expect(page.locator("#earnings")).to_be_visible()
    for annotation in annotations:
        row = page.locator(f'tr.ledger-entry[data-kind="piece_pay"][data-annotation-id="{annotation.pk}"]')
        expect(row).to_have_count(1)
        assert Decimal(row.get_attribute("data-amount")) == Decimal("0.25")
    db_piece = LedgerEntry.objects.filter(project=project, annotator=annotator, kind="piece_pay").count()
    assert page.locator('tr.ledger-entry[data-kind="piece_pay"]').count() == db_piece == 3
    expect(page.locator('tr.time-category[data-category="instruction_reading"]')).to_have_count(1)
    assert re.search(r"\b0\.75\b", page.locator("#today-pay").text_content())
    assert page.js_errors == []
