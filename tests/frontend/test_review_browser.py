"""The review page in Chromium, by keyboard only: correct a disputed text, accept one, reject
one, then end the session; the decisions and the reviewer's time land where they should.
With TALLY_REVIEW_SCREENSHOTS=docs it saves docs/console/review.png."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from annotation.models import Annotation, Membership, ReviewDecision
from labor_ledger.models import LedgerEntry, TimeCategory
from tests.factories import UserFactory, add_member
from tests.support.annotators import work
from tests.support.browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("TALLY_REVIEW_SCREENSHOTS", "")


def test_an_admin_reviews_by_keyboard_only(page, labeling):
    project, kim = labeling
    admin = project.memberships.get(role="admin").user
    lee = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="lee"))
    project.annotations_per_example = 2
    project.save(update_fields=["annotations_per_example"])
    labels = {label.name: label for label in project.labels.all()}
    start = timezone.now() - timedelta(minutes=10)
    # three texts, each labeled by both: one disputed, two agreed
    plan = [("World", "Sports"), ("Business", "Business"), ("Sci-Tech", "Sci-Tech")]
    for n, (kim_says, lee_says) in enumerate(plan):
        work(project, kim, start=start + timedelta(seconds=40 * n), label=labels[kim_says])
        work(project, lee, start=start + timedelta(seconds=40 * n + 20), label=labels[lee_says])
    disputed = Annotation.objects.get(annotator=kim, labels=labels["World"]).example_id

    log_in(page, admin.username)
    page.goto(reverse("console:review", args=[project.slug]))
    item = page.locator("#review-item")
    expect(item).to_have_attribute("data-example-id", str(disputed))
    expect(page.locator("#review-why")).to_have_attribute("data-why", "disputed")
    expect(page.locator("#review-given tr.given")).to_have_count(2)
    expect(page.locator("#review-clock")).to_have_attribute("data-clock", "review")
    if SHOTS:
        target = Path(SHOTS) / "console/review.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=True)

    page.keyboard.press("2")  # correct the disputed text to Sports
    expect(page.locator("#review-remaining")).to_have_text("2")
    second = item.get_attribute("data-example-id")
    page.keyboard.press("a")  # accept the leading label of the next
    expect(page.locator("#review-remaining")).to_have_text("1")
    third = item.get_attribute("data-example-id")
    page.keyboard.press("r")  # reject the last one's labels
    expect(page.locator("#review-empty")).to_be_visible()
    page.keyboard.press("q")  # done: the session closes now
    expect(page).to_have_url(reverse("console:dashboard", args=[project.slug]))

    decisions = {d.example_id: d for d in ReviewDecision.objects.all()}
    assert decisions[disputed].decision == "correct" and decisions[disputed].label_ids == [labels["Sports"].pk]
    assert decisions[int(second)].decision == "accept" and decisions[int(third)].decision == "reject"
    assert Annotation.objects.filter(example_id=int(third), source="human", status="rejected").count() == 2
    review_time = LedgerEntry.objects.get(annotator=admin, time_category=TimeCategory.REVIEW)
    assert review_time.active_seconds > 0 and review_time.active_seconds <= review_time.wall_seconds
    assert page.js_errors == []
