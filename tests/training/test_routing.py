"""Routing by doubt (issue 16, item 3): a labeled text gets one more annotator when the model is
unsure of it or a label disagrees, within the project's budget and cap; the admin sees why."""

from datetime import UTC, datetime, timedelta

import pytest

from annotation import review
from annotation import services as annotation_services
from annotation.models import Example, PriorityReason
from tests.factories import add_examples, add_member, make_project
from tests.support.annotators import work
from tests.support.review import predict

pytestmark = pytest.mark.django_db
T0 = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)


def at(seconds=0):
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def routed(admin_user):
    """Overlap 1, routing on: margin below 0.2 is unsure, confidence from 0.9 is confident."""
    project = make_project(admin=admin_user, labels=["pos", "neg"], annotations_per_example=1)
    annotation_services.project_update(project=project, doubt_routing=True, doubt_budget=10, doubt_max_annotators=3)
    add_examples(project, ["first text", "second text", "third text"])
    return project


def first_label(project, user, label_name, *, start=0):
    return work(project, user, start=at(start), label=project.labels.get(name=label_name))[1]


def test_an_unsure_model_sends_the_text_to_a_second_annotator(routed):
    a, b = add_member(routed), add_member(routed)
    first = Example.objects.filter(project=routed).order_by("id").first()
    predict(first, routed.labels.get(name="pos"), confidence=0.55, margin=0.1)
    annotation = first_label(routed, a, "pos")
    assert annotation.example_id == first.pk
    first.refresh_from_db()
    assert (first.extra_annotations, first.routed_reason) == (1, PriorityReason.DOUBT)
    # the second annotator gets it before any fresh text
    attempt = annotation_services.claim_next(project=routed, annotator=b, now=at(100))
    assert attempt.example_id == first.pk


def test_a_label_against_a_confident_model_is_routed_and_agreement_is_not(routed):
    a = add_member(routed)
    texts = list(Example.objects.filter(project=routed).order_by("id"))
    pos, neg = routed.labels.get(name="pos"), routed.labels.get(name="neg")
    predict(texts[0], neg, confidence=0.97, margin=0.94)  # a disagrees with it
    predict(texts[1], pos, confidence=0.97, margin=0.94)  # a agrees
    first_label(routed, a, "pos", start=0)
    first_label(routed, a, "pos", start=60)
    texts[0].refresh_from_db()
    texts[1].refresh_from_db()
    assert (texts[0].extra_annotations, texts[0].routed_reason) == (1, PriorityReason.DISAGREEMENT)
    assert texts[1].extra_annotations == 0 and texts[1].routed_reason == ""


def test_disagreeing_annotators_bring_a_third_up_to_the_cap(routed):
    a, b, c, d = (add_member(routed) for _ in range(4))
    text = Example.objects.filter(project=routed).order_by("id").first()
    predict(text, routed.labels.get(name="pos"), confidence=0.55, margin=0.1)
    first_label(routed, a, "pos", start=0)  # unsure model: a second annotator
    second = first_label(routed, b, "neg", start=60)  # they disagree: a third
    assert second.example_id == text.pk
    third = first_label(routed, c, "neg", start=120)
    assert third.example_id == text.pk
    text.refresh_from_db()
    assert text.extra_annotations == 2 and text.submitted_count == 3  # the cap: 3 annotators
    offered = annotation_services.claim_next(project=routed, annotator=d, now=at(200))
    assert offered.example_id != text.pk


def test_routing_stops_at_the_budget(routed):
    annotation_services.project_update(project=routed, doubt_budget=1)
    a = add_member(routed)
    texts = list(Example.objects.filter(project=routed).order_by("id"))
    for t in texts[:2]:
        predict(t, routed.labels.get(name="pos"), confidence=0.55, margin=0.1)
    first_label(routed, a, "pos", start=0)
    first_label(routed, a, "pos", start=60)
    assert review.routing_budget_used(routed) == 1
    assert sorted(Example.objects.filter(project=routed).values_list("extra_annotations", flat=True)) == [0, 0, 1]


def test_routing_is_off_by_default(admin_user):
    project = make_project(admin=admin_user, labels=["pos", "neg"])
    assert project.doubt_routing is False
    add_examples(project, ["only text"])
    text = project.examples.get()
    predict(text, project.labels.get(name="pos"), confidence=0.5, margin=0.0)
    first_label(project, add_member(project), "neg")
    text.refresh_from_db()
    assert text.extra_annotations == 0 and text.routed_reason == ""
