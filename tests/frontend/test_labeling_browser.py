"""The annotator's page in headless Chromium, driven by the keyboard only, against a live server.

What the database must show afterwards is the point: accepted annotations whose attempts carry
server-measured time (active seconds > 0 and never more than the wall-clock span).
"""

import os
import re
from decimal import Decimal

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from annotation.models import Annotation, Attempt, Project
from tests.factories import add_examples
from tests.support.browser import (
    HEARTBEAT_S,
    label_by_keyboard,
    log_in,
    shown_attempt_id,
    wait_all_saved,
    wait_images_settled,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_annotator_labels_three_texts_by_keyboard_and_the_server_measures_time(page, labeling):
    project, annotator = labeling
    log_in(page, annotator.username)
    assert page.get_by_role("link", name=f"Label {project.name}").count() == 1

    page.goto(reverse("frontend:label", args=[project.slug]))
    shown_attempt_id(page)
    expect(page.locator("#check-again")).to_be_hidden()
    # The instructions open first: reading them is timed for the ledger, then I closes them.
    expect(page.locator("#instructions")).to_have_attribute("open", "")
    page.wait_for_timeout(HEARTBEAT_S * 1000 * 3)
    page.keyboard.press("i")
    expect(page.locator("#instructions")).not_to_have_attribute("open", "")
    labeled_attempts = []
    for key in ["1", "2", "4"]:
        shown_attempt_id(page)
        page.wait_for_timeout(HEARTBEAT_S * 1000 * 3)  # a couple of heartbeats on each text
        labeled_attempts.append(int(label_by_keyboard(page, key)))
    wait_all_saved(page)
    assert page.locator("#labeled-count").text_content() == "3"

    annotations = Annotation.objects.filter(project=project, annotator=annotator, status=Annotation.Status.ACCEPTED)
    assert annotations.count() == 3
    names = {a.attempt_id: [lab.name for lab in a.labels.all()] for a in annotations}
    assert names == {
        labeled_attempts[0]: ["World"],
        labeled_attempts[1]: ["Sports"],
        labeled_attempts[2]: ["Sci-Tech"],
    }
    for annotation in annotations.select_related("attempt"):
        attempt = annotation.attempt
        assert attempt.status == Attempt.Status.SUBMITTED
        assert attempt.shown_at is not None
        assert attempt.heartbeat_count >= 2
        assert Decimal("0") < attempt.active_seconds <= attempt.wall_seconds
        # About three heartbeat intervals on screen; generous bounds for a loaded CI machine.
        assert attempt.wall_seconds < Decimal("30")
    assert page.js_errors == []


def test_skip_and_undo_by_keyboard(page, labeling):
    project, annotator = labeling
    log_in(page, annotator.username)
    page.goto(reverse("frontend:label", args=[project.slug]))

    # S skips
    skipped = int(shown_attempt_id(page))
    page.keyboard.press("s")
    assert int(shown_attempt_id(page)) != skipped
    # Esc skips too
    skipped_by_esc = int(shown_attempt_id(page))
    page.keyboard.press("Escape")
    wait_all_saved(page)
    assert set(Attempt.objects.filter(status=Attempt.Status.SKIPPED).values_list("id", flat=True)) == {
        skipped,
        skipped_by_esc,
    }

    # Label one, then U brings it back with the label preselected, and it can be relabeled
    shown_attempt_id(page)
    first_text = page.locator("#text").text_content()
    labeled = int(label_by_keyboard(page, "3"))
    wait_all_saved(page)
    page.keyboard.press("u")
    expect(page.locator("#text")).to_have_text(first_text)
    assert page.locator(".label-choice[aria-pressed=true]").text_content().strip().endswith("Business")
    assert Annotation.objects.get(attempt_id=labeled).status == Annotation.Status.RETRACTED

    label_by_keyboard(page, "1")
    wait_all_saved(page)
    live = Annotation.objects.get(project=project, annotator=annotator, status=Annotation.Status.ACCEPTED)
    assert live.example.text == first_text
    assert [lab.name for lab in live.labels.all()] == ["World"]

    # Ctrl+Z undoes as well; a second undo has nothing left to undo
    page.keyboard.press("Control+z")
    expect(page.locator("#text")).to_have_text(first_text)
    wait_all_saved(page)
    assert not Annotation.objects.filter(annotator=annotator, status=Annotation.Status.ACCEPTED).exists()
    page.keyboard.press("u")
    page.get_by_role("status").filter(has_text="Nothing to undo").wait_for()
    assert page.js_errors == []


def test_a_lost_answer_is_retried_with_the_same_key_and_counted_once(page, labeling):
    project, annotator = labeling
    log_in(page, annotator.username)
    seen = []

    def lose_the_first_answer(route):
        seen.append(route.request.post_data_json)
        if len(seen) == 1:
            route.fetch()  # the server records the label...
            route.fulfill(status=502, body="bad gateway")  # ...but the answer never reaches the page
        else:
            route.continue_()

    page.route("**/api/attempts/*/submit/", lose_the_first_answer)
    page.goto(reverse("frontend:label", args=[project.slug]))
    shown_attempt_id(page)
    label_by_keyboard(page, "2")
    page.get_by_role("alert").filter(has_text="will be sent again").wait_for()
    wait_all_saved(page)

    assert len(seen) == 2
    assert seen[0]["idempotency_key"] == seen[1]["idempotency_key"]
    assert Annotation.objects.filter(annotator=annotator).count() == 1
    assert page.locator("#labeled-count").text_content() == "1"


def test_the_end_of_the_queue_is_announced(page, labeling):
    project, annotator = labeling
    keep = list(project.examples.order_by("id").values_list("id", flat=True)[:2])
    project.examples.exclude(id__in=keep).delete()
    log_in(page, annotator.username)
    page.goto(reverse("frontend:label", args=[project.slug]))
    label_by_keyboard(page, "1")
    shown_attempt_id(page)
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    expect(page.locator("#text")).to_have_text(re.compile("Nothing left to label"))
    expect(page.locator("#check-again")).to_be_visible()
    expect(page.locator("#left-count")).to_have_text("0")
    wait_all_saved(page)
    assert Annotation.objects.filter(annotator=annotator, status=Annotation.Status.ACCEPTED).count() == 2


def test_multi_label_number_keys_toggle(page, labeling):
    project, annotator = labeling
    Project.objects.filter(pk=project.pk).update(label_mode=Project.LabelMode.MULTI)
    log_in(page, annotator.username)
    page.goto(reverse("frontend:label", args=[project.slug]))
    shown_attempt_id(page)
    for key in ["1", "3", "4", "4"]:  # 4 twice: on, then off again
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    wait_all_saved(page)
    annotation = Annotation.objects.get(annotator=annotator)
    assert sorted(lab.name for lab in annotation.labels.all()) == ["Business", "World"]


def test_no_inline_script_runs_from_user_text(page, labeling, live_server):
    """Stored XSS payloads in a text, a label and the instructions stay text."""
    project, annotator = labeling
    payload = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"
    Project.objects.filter(pk=project.pk).update(instructions=payload)
    project.labels.filter(name="World").update(name=f"World {payload}"[:100])
    Annotation.objects.all().delete()
    project.examples.all().delete()
    add_examples(project, [payload])
    log_in(page, annotator.username)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(reverse("frontend:label", args=[project.slug]))
    shown_attempt_id(page)
    assert page.locator("#text").text_content() == payload
    wait_images_settled(page)
    assert page.title() != "pwned"
    assert dialogs == []


# --- for people who label all day (issue 14, item 7) ----------------------------------------------

SHOTS = os.environ.get("TALLY_LABEL_SCREENSHOTS", "")  # e.g. docs/labeling: saves the page's screenshots


def shot(page, name):
    if SHOTS:
        from pathlib import Path

        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def box(page):
    b = page.locator("#text").bounding_box()
    return (round(b["x"], 1), round(b["y"], 1), round(b["width"], 1), round(b["height"], 1))


def test_the_first_key_press_moves_nothing_and_the_page_says_what_it_saved_and_times(page, labeling, settings):
    from labor_ledger import services as ledger_services

    project, annotator = labeling
    Project.objects.filter(pk=project.pk).update(
        instructions="Choose the section a newspaper would print the story in.\n\n" + "Read the whole text. " * 40
    )
    ledger_services.pay_policy_create(
        project=project, created_by=project.memberships.get(role="admin").user, piece_rate=Decimal("0.10")
    )
    log_in(page, annotator.username)
    page.goto(reverse("frontend:label", args=[project.slug]))
    first = shown_attempt_id(page)
    # The instructions are open beside the text, and the clock runs for them, not for the text.
    expect(page.locator("#instructions")).to_have_attribute("open", "")
    expect(page.locator("#clock")).to_have_attribute("data-clock", "instructions")
    expect(page.locator("#tally-texts")).to_have_text("0")
    expect(page.locator("#tally-earned")).to_have_text("0.00")
    page.wait_for_timeout(HEARTBEAT_S * 1000 * 4)
    shot(page, "label-instructions-open")
    before = box(page)

    # when: the first key press
    page.keyboard.press("3")
    # then: the text has not moved by a pixel, the instructions are still open beside it, and
    # the clock went to the text
    assert box(page) == before
    expect(page.locator("#instructions")).to_have_attribute("open", "")
    expect(page.locator("#clock")).to_have_attribute("data-clock", "text")
    expect(page.locator("#clock")).to_have_text("Timing: this text")
    page.wait_for_timeout(HEARTBEAT_S * 1000 * 4)
    assert box(page) == before
    # closing and opening the instructions by key moves nothing either
    page.keyboard.press("i")
    expect(page.locator("#instructions")).not_to_have_attribute("open", "")
    assert box(page) == before
    page.keyboard.press("i")
    expect(page.locator("#clock")).to_have_attribute("data-clock", "instructions")
    assert box(page) == before

    # Enter: "Saved: Business", undo by U, and the tally counts the text and its pay
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(re.compile(r"^Saved: Business .* U to undo$"))
    expect(page.locator("#tally-texts")).to_have_text("1")
    expect(page.locator("#tally-earned")).to_have_text("0.10")
    expect(page.locator("#tally-time")).not_to_have_text("0:00")
    expect(page.locator("#training-version")).to_have_text("none yet")
    assert box(page) == before
    shot(page, "label-saved")
    wait_all_saved(page)

    # The server credited one clock at a time: the reading and the text never overlap.
    from annotation.models import InstructionReading

    attempt = Attempt.objects.get(pk=int(first))
    readings = list(InstructionReading.objects.filter(annotator=annotator).order_by("started_at"))
    assert readings and readings[0].ended_at is not None  # closed at the first key press
    assert attempt.shown_at >= readings[0].ended_at - timezone_delta(HEARTBEAT_S)
    span = max(attempt.finished_at, *(r.ended_at or r.last_active_at for r in readings)) - readings[0].started_at
    credited = attempt.active_seconds + sum(r.active_seconds for r in readings)
    assert Decimal(0) < credited <= Decimal(str(span.total_seconds())) + Decimal("0.001")
    assert page.js_errors == []

    page.keyboard.press("u")
    expect(page.locator("#status")).to_have_text(re.compile("Undone"))
    expect(page.locator("#tally-texts")).to_have_text("0")


def timezone_delta(seconds):
    from datetime import timedelta

    return timedelta(seconds=seconds)
