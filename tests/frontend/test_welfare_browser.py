"""Welfare on the labeling page (issue 17), in headless Chromium, by keyboard only: a
sensitive text arrives blurred behind a warning naming its categories; R reveals it, S skips
it (paid as time worked); past the session limit the page hands out plain texts, then says
the limit is reached; B takes a break and ends it; the support text is shown."""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from annotation import welfare
from annotation.models import Annotation, Attempt, Break, Example
from labor_ledger.models import LedgerEntry, TimeCategory
from tests.factories import add_examples
from tests.support.browser import log_in, shown_attempt_id, wait_all_saved
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_warning_reveal_skip_limit_and_break_by_keyboard(page, labeling):
    project, annotator = labeling
    Example.objects.filter(project=project).delete()
    hard = add_examples(project, ["A grim account, one.", "A grim account, two.", "A grim account, three."])
    plain = add_examples(project, ["A calm weather report."])[0]
    for rank, example in enumerate(hard):
        Example.objects.filter(pk=example.pk).update(priority=10 - rank)  # the sensitive ones first
    welfare.policy_set(project=project, sensitive=True, max_texts_per_session=2, support_text="Talk to Sam: 555-0100.")
    welfare.marks_set(project=project, example_ids=[e.pk for e in hard], categories=["violence", "hate"], set_by=None)

    log_in(page, annotator.username)
    page.goto(reverse("frontend:label", args=[project.slug]))
    expect(page.locator("#support")).to_contain_text("Talk to Sam: 555-0100.")

    # 1. The first text arrives blurred behind its warning; a label key does nothing yet.
    first = int(shown_attempt_id(page))
    expect(page.locator("#content-warning")).to_be_visible()
    expect(page.locator("#warning-categories")).to_have_text("Violence, Hate")
    expect(page.locator("#text")).to_have_class(re.compile(r"\bblurred\b"))
    page.keyboard.press("1")
    expect(page.locator("#status")).to_contain_text("reveal")
    assert page.locator(".label-choice[aria-pressed=true]").count() == 0
    # R reveals it; then it is labeled as any other text.
    page.keyboard.press("r")
    expect(page.locator("#content-warning")).to_be_hidden()
    expect(page.locator("#text")).not_to_have_class(re.compile(r"\bblurred\b"))
    page.keyboard.press("1")
    page.keyboard.press("Enter")

    # 2. The second sensitive text: S skips it without revealing it.
    second = int(shown_attempt_id(page))
    assert second != first
    expect(page.locator("#content-warning")).to_be_visible()
    page.keyboard.press("s")

    # 3. The session limit (2) is reached: the plain text comes, with no warning.
    expect(page.locator("#text")).to_have_attribute("data-attempt-id", re.compile(r"^\d+$"))
    expect(page.locator("#text")).to_have_text("A calm weather report.")
    expect(page.locator("#content-warning")).to_be_hidden()

    # 4. B starts a break (the clock pauses), B ends it.
    page.keyboard.press("b")
    expect(page.locator("#labeler")).to_have_attribute("data-break", "on")
    expect(page.locator("#clock")).to_have_text("On a break")
    wait_for(lambda: Break.objects.filter(user=annotator).exists(), what="the break started")
    page.keyboard.press("b")
    expect(page.locator("#labeler")).not_to_have_attribute("data-break", "on")
    wait_for(lambda: Break.objects.filter(user=annotator, ended_at__isnull=False).exists(), what="the break ended")

    # 5. Label the plain text; then only a sensitive text is left, and the page says why.
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    expect(page.locator("#text")).to_contain_text("limit of sensitive texts reached")
    expect(page.locator("#text")).to_contain_text("continue with non-sensitive work")
    wait_all_saved(page)

    assert Attempt.objects.get(pk=second).status == Attempt.Status.SKIPPED
    skip_entry = LedgerEntry.objects.exclude(time_category=TimeCategory.BETWEEN_TASKS).get(attempt_id=second)
    assert skip_entry.time_category == TimeCategory.SENSITIVE_SKIPPED
    assert Annotation.objects.filter(annotator=annotator).count() == 2
    assert Annotation.objects.filter(example=plain).exists()
    assert not Attempt.objects.filter(example=hard[2]).exists()
    assert page.js_errors == []
