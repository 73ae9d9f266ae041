"""Review and adjudication (issue 16, item 4): decisions, their idempotency and errors, the
adjudicated label as the training target, and the review page's order."""

from datetime import UTC, datetime, timedelta

import pytest

from annotation import review
from annotation import services as annotation_services
from annotation.models import Annotation, ReviewDecision
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from frontend.console import review as review_selectors
from tests.factories import add_member, make_project
from tests.support.annotators import work
from tests.support.review import predict
from training import selectors as training_selectors

pytestmark = pytest.mark.django_db
T0 = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)


def at(seconds=0):
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def overlap3(admin_user):
    project = make_project(admin=admin_user, labels=["pos", "neg", "mixed"], annotations_per_example=3)
    from tests.factories import add_examples

    add_examples(project, [f"text {i}" for i in range(6)])
    return project


def label_all(project, labels_by_annotator, *, start=0):
    """Each annotator labels the first text offered (the same one, overlap first) with their label."""
    out = []
    for n, (user, name) in enumerate(labels_by_annotator):
        _, annotation = work(project, user, start=at(start + 30 * n), label=project.labels.get(name=name))
        out.append(annotation)
    return out


def test_accept_adjudicates_the_leading_label_and_a_retry_is_a_no_op(overlap3, admin_user):
    a, b, c = (add_member(overlap3) for _ in range(3))
    anns = label_all(overlap3, [(a, "pos"), (b, "pos"), (c, "neg")])
    example_id = anns[0].example_id
    first = review.review_decide(
        project=overlap3,
        reviewer=admin_user,
        example_id=example_id,
        decision="accept",
        idempotency_key="k",
        now=at(200),
    )
    again = review.review_decide(
        project=overlap3,
        reviewer=admin_user,
        example_id=example_id,
        decision="accept",
        idempotency_key="k",
        now=at(201),
    )
    assert again.pk == first.pk and ReviewDecision.objects.count() == 1
    adjudicated = Annotation.objects.get(source=Annotation.Source.REVIEW)
    assert [label.name for label in adjudicated.labels.all()] == ["pos"] and adjudicated.annotator_id == admin_user.pk
    assert Annotation.objects.filter(source=Annotation.Source.HUMAN, status="accepted").count() == 3  # kept
    with pytest.raises(Conflict):  # the same key for another decision
        review.review_decide(
            project=overlap3, reviewer=admin_user, example_id=example_id, decision="reject", idempotency_key="k"
        )


def test_a_tie_cannot_be_accepted_and_is_corrected_instead(overlap3, admin_user):
    a, b = add_member(overlap3), add_member(overlap3)
    anns = label_all(overlap3, [(a, "pos"), (b, "neg")])
    ex = anns[0].example_id
    with pytest.raises(Conflict) as exc:
        review.review_decide(
            project=overlap3, reviewer=admin_user, example_id=ex, decision="accept", idempotency_key="1"
        )
    assert exc.value.code == "no_leading_label"
    mixed = overlap3.labels.get(name="mixed")
    review.review_decide(
        project=overlap3,
        reviewer=admin_user,
        example_id=ex,
        decision="correct",
        label_ids=[mixed.pk],
        idempotency_key="2",
    )
    # a later decision supersedes the adjudicated label (the old one is kept, retracted)
    neg = overlap3.labels.get(name="neg")
    review.review_decide(
        project=overlap3,
        reviewer=admin_user,
        example_id=ex,
        decision="correct",
        label_ids=[neg.pk],
        idempotency_key="3",
    )
    live = Annotation.objects.get(source=Annotation.Source.REVIEW, status="accepted")
    assert [label.pk for label in live.labels.all()] == [neg.pk]
    assert Annotation.objects.filter(source=Annotation.Source.REVIEW, status="retracted").count() == 1


def test_the_adjudicated_label_is_the_training_target_over_the_vote(overlap3, admin_user):
    a, b, c = (add_member(overlap3) for _ in range(3))
    anns = label_all(overlap3, [(a, "pos"), (b, "pos"), (c, "neg")])
    ex = anns[0].example_id
    neg = overlap3.labels.get(name="neg")
    config = training_selectors.training_config(project=overlap3)
    config.holdout_share = 0.0
    before = training_selectors.training_snapshot(project=overlap3, config=config)
    assert before.train_targets[before.train_example_ids.index(ex)].argmax() == before.label_ids.index(
        overlap3.labels.get(name="pos").pk
    )
    decision = review.review_decide(
        project=overlap3,
        reviewer=admin_user,
        example_id=ex,
        decision="correct",
        label_ids=[neg.pk],
        idempotency_key="x",
    )
    snap = training_selectors.training_snapshot(project=overlap3, config=config)
    target = snap.train_targets[snap.train_example_ids.index(ex)]
    assert target[snap.label_ids.index(neg.pk)] == 1.0 and target.sum() == 1.0
    assert [(ann, e) for ann, e, _ in snap.manifest if e == ex] == [(decision.adjudication_id, ex)]
    assert snap.n_machine_labels == 0


def test_decisions_refuse_bad_input_with_clear_errors(overlap3, admin_user, project):
    a = add_member(overlap3)
    (ann,) = label_all(overlap3, [(a, "pos")])
    ok = {"project": overlap3, "reviewer": admin_user, "example_id": ann.example_id, "idempotency_key": "k"}
    with pytest.raises(ValidationFailed):
        review.review_decide(**ok, decision="approve")
    with pytest.raises(ValidationFailed):
        review.review_decide(**{**ok, "idempotency_key": ""}, decision="accept")
    with pytest.raises(ValidationFailed):
        review.review_decide(**ok, decision="correct", label_ids=[999999])
    with pytest.raises(NotFound):
        other_text = project.examples.create(text="elsewhere", text_hash="h" * 64)
        review.review_decide(**{**ok, "example_id": other_text.pk}, decision="accept")
    with pytest.raises(Forbidden):
        review.review_decide(**{**ok, "reviewer": a}, decision="accept")
    assert not ReviewDecision.objects.exists()


def test_reject_returns_the_text_to_the_pool(overlap3, admin_user):
    a = add_member(overlap3)
    (ann,) = label_all(overlap3, [(a, "pos")])
    review.review_decide(
        project=overlap3, reviewer=admin_user, example_id=ann.example_id, decision="reject", idempotency_key="r"
    )
    ann.refresh_from_db()
    assert ann.status == "rejected" and ann.example.__class__.objects.get(pk=ann.example_id).submitted_count == 0


def test_the_review_queue_puts_disputes_first_then_the_model_then_spot_checks(admin_user):
    project = make_project(admin=admin_user, labels=["pos", "neg"], annotations_per_example=1)
    from tests.factories import add_examples

    texts = add_examples(project, ["calm", "agreed", "disputed", "against the model"])
    pos, neg = project.labels.get(name="pos"), project.labels.get(name="neg")
    a, b = add_member(project), add_member(project)
    now = T0

    def give(user, example, label):
        nonlocal now
        attempt = annotation_services.claim_next(project=project, annotator=user, now=now)
        attempt.example = example
        attempt.save(update_fields=["example"])
        annotation_services.annotation_submit(attempt_id=attempt.pk, annotator=user, label_ids=[label.pk], now=now)
        now += timedelta(seconds=10)

    calm, agreed, disputed, against = texts
    give(a, calm, pos)
    give(a, agreed, pos)
    give(b, agreed, pos)
    give(a, disputed, pos)
    give(b, disputed, neg)
    give(a, against, pos)
    predict(against, neg, confidence=0.95, margin=0.9)
    predict(calm, pos, confidence=0.95, margin=0.9)
    order = list(review_selectors.review_queue(project=project))
    assert order[:2] == [disputed, against]
    assert set(order[2:]) == {calm, agreed}
    page = review_selectors.review_page(project=project)
    assert (page.remaining, page.disputed, page.model_disagrees) == (4, 1, 1)
    assert page.item.why == "disputed" and sorted(g.labels[0] for g in page.item.given) == ["neg", "pos"]
    assert len({g.who for g in page.item.given}) == 2 and all(
        g.who not in (a.username, b.username) for g in page.item.given
    )
    review.review_decide(
        project=project,
        reviewer=admin_user,
        example_id=disputed.pk,
        decision="correct",
        label_ids=[neg.pk],
        idempotency_key="d",
        now=now,
    )
    assert review_selectors.review_page(project=project).item.example == against


def test_a_rejected_text_labeled_again_comes_back_to_review(overlap3, admin_user):
    a, b = add_member(overlap3), add_member(overlap3)
    (ann,) = label_all(overlap3, [(a, "pos")])
    review.review_decide(
        project=overlap3,
        reviewer=admin_user,
        example_id=ann.example_id,
        decision="reject",
        idempotency_key="r",
        now=at(300),
    )
    assert ann.example_id not in {e.pk for e in review_selectors.review_queue(project=overlap3)}
    again = work(overlap3, b, start=at(500), label=overlap3.labels.get(name="neg"))[1]
    assert again.example_id == ann.example_id  # the started text is offered first
    assert ann.example_id in {e.pk for e in review_selectors.review_queue(project=overlap3)}


def test_the_review_api_decides_once_per_key_and_scopes_who_reads(overlap3, admin_user, api):
    a, b, c = (add_member(overlap3) for _ in range(3))
    anns = label_all(overlap3, [(a, "pos"), (b, "neg"), (c, "neg")])
    example_id = anns[0].example_id
    url = f"/api/projects/{overlap3.slug}/review/decisions/"
    admin = api(admin_user)
    neg = overlap3.labels.get(name="neg").pk
    body = {"example": example_id, "decision": "correct", "labels": [neg]}

    assert admin.post(url, body, format="json").status_code == 400  # no idempotency key
    first = admin.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="r-1")
    again = admin.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="r-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.data == again.data and first.data["label_ids"] == [neg]
    assert ReviewDecision.objects.count() == 1
    assert Annotation.objects.filter(example_id=example_id, source="review").count() == 1
    reused = admin.post(url, {**body, "decision": "reject"}, format="json", HTTP_IDEMPOTENCY_KEY="r-1")
    assert reused.status_code == 409 and reused.data["code"] == "key_reused"
    unknown = admin.post(url, {**body, "example": 10**9}, format="json", HTTP_IDEMPOTENCY_KEY="r-2")
    assert unknown.status_code == 404
    bad = admin.post(url, {**body, "decision": "maybe"}, format="json", HTTP_IDEMPOTENCY_KEY="r-3")
    assert bad.status_code == 400 and ReviewDecision.objects.count() == 1

    listed = admin.get(url, {"example": example_id})
    assert [d["id"] for d in listed.data["results"]] == [first.data["id"]]
    assert api(a).post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="a-1").status_code in (403, 404)
    assert api(a).get(url).status_code in (403, 404)  # annotators never see decisions on their labels
