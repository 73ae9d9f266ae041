from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation import services
from annotation.models import Annotation, Attempt, Example, Membership
from core.errors import Conflict, NotFound, ValidationFailed
from tests.factories import UserFactory, add_member

T0 = timezone.now().replace(microsecond=0)


def at(seconds: float):
    return T0 + timedelta(seconds=seconds)


def test_project_create_makes_labels_and_admin_membership(admin_user):
    project = services.project_create(name="News topics", labels=["World", "Sports"], created_by=admin_user)
    assert project.slug == "news-topics"
    assert list(project.labels.values_list("name", flat=True)) == ["World", "Sports"]
    assert project.memberships.get().role == Membership.Role.ADMIN


@pytest.mark.parametrize("labels", [[], ["a", "a"], ["ok", "  "]])
def test_project_create_refuses_bad_label_sets(admin_user, labels):
    with pytest.raises(ValidationFailed):
        services.project_create(name="Bad", labels=labels, created_by=admin_user)


def test_claims_hand_out_oldest_first_and_never_the_same_example_twice(project, examples, annotator):
    other = add_member(project)
    first = services.claim_next(project=project, annotator=annotator, now=at(0))
    second = services.claim_next(project=project, annotator=other, now=at(0))
    assert first.example_id == examples[0].pk
    assert second.example_id == examples[1].pk


def test_claim_reoffers_open_claims_then_caps_them(project, examples, annotator):
    first = services.claim_next(project=project, annotator=annotator, now=at(0))
    assert services.claim_next(project=project, annotator=annotator, now=at(1)).pk == first.pk
    second = services.claim_next(project=project, annotator=annotator, exclude_attempt_ids=[first.pk], now=at(1))
    assert second.pk != first.pk
    with pytest.raises(Conflict):
        services.claim_next(project=project, annotator=annotator, exclude_attempt_ids=[first.pk, second.pk], now=at(2))


def test_overlap_lets_distinct_annotators_share_an_example(admin_user, examples, project):
    services.project_update(project=project, annotations_per_example=2)
    a, b, c = (add_member(project) for _ in range(3))
    claims = [services.claim_next(project=project, annotator=u, now=at(0)) for u in (a, b, c)]
    assert claims[0].example_id == claims[1].example_id == examples[0].pk
    assert claims[2].example_id == examples[1].pk


def test_expired_claim_returns_example_to_the_pool(project, examples, annotator, settings):
    other = add_member(project)
    first = services.claim_next(project=project, annotator=annotator, now=at(0))
    later = at(settings.TALLY_CLAIM_LEASE_SECONDS + 1)
    again = services.claim_next(project=project, annotator=other, now=later)
    assert again.example_id == first.example_id
    first.refresh_from_db()
    assert first.status == Attempt.Status.EXPIRED


def test_active_seconds_come_from_server_heartbeats_and_cap_idle_gaps(project, examples, annotator, settings):
    attempt = services.claim_next(project=project, annotator=annotator, now=at(0))
    services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(2))  # shown
    for t in (7, 12, 17):
        services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(t))
    # 60 s without heartbeats: idle; the late heartbeat vouches for one interval only.
    services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(77))
    annotation = services.annotation_submit(
        attempt_id=attempt.pk, annotator=annotator, label_ids=[project.labels.first().pk], now=at(80)
    )
    attempt.refresh_from_db()
    assert attempt.active_seconds == Decimal("15") + settings.TALLY_HEARTBEAT_INTERVAL_SECONDS + 3
    assert attempt.wall_seconds == Decimal("78")  # from shown (t=2) to submitted (t=80)
    assert annotation.status == Annotation.Status.ACCEPTED
    assert Example.objects.get(pk=attempt.example_id).submitted_count == 1


def test_unseen_prefetched_claim_accrues_no_time(project, examples, annotator):
    attempt = services.claim_next(project=project, annotator=annotator, now=at(0))
    services.attempt_skip(attempt_id=attempt.pk, annotator=annotator, now=at(50))
    attempt.refresh_from_db()
    assert attempt.active_seconds == 0
    assert attempt.status == Attempt.Status.SKIPPED


def test_same_idempotency_key_twice_creates_one_annotation(project, examples, annotator):
    attempt = services.claim_next(project=project, annotator=annotator, now=at(0))
    label = project.labels.first()
    one = services.annotation_submit(
        attempt_id=attempt.pk, annotator=annotator, label_ids=[label.pk], idempotency_key="k1"
    )
    two = services.annotation_submit(
        attempt_id=attempt.pk, annotator=annotator, label_ids=[label.pk], idempotency_key="k1"
    )
    assert one.pk == two.pk
    assert Annotation.objects.count() == 1
    assert Example.objects.get(pk=attempt.example_id).submitted_count == 1


def test_reusing_a_key_for_another_text_is_a_conflict(project, examples, annotator):
    label = project.labels.first()
    a = services.claim_next(project=project, annotator=annotator)
    services.annotation_submit(attempt_id=a.pk, annotator=annotator, label_ids=[label.pk], idempotency_key="k")
    b = services.claim_next(project=project, annotator=annotator)
    with pytest.raises(Conflict):
        services.annotation_submit(attempt_id=b.pk, annotator=annotator, label_ids=[label.pk], idempotency_key="k")


def test_submit_refuses_foreign_attempts_and_labels(project, examples, annotator, admin_user):
    other_project_label = services.project_create(name="Other", labels=["x"], created_by=admin_user).labels.get()
    attempt = services.claim_next(project=project, annotator=annotator)
    with pytest.raises(NotFound):
        services.annotation_submit(
            attempt_id=attempt.pk, annotator=UserFactory(), label_ids=[project.labels.first().pk]
        )
    with pytest.raises(ValidationFailed):
        services.annotation_submit(attempt_id=attempt.pk, annotator=annotator, label_ids=[other_project_label.pk])
    with pytest.raises(ValidationFailed):  # single-label project
        services.annotation_submit(
            attempt_id=attempt.pk, annotator=annotator, label_ids=list(project.labels.values_list("pk", flat=True))
        )


def test_undo_retracts_the_last_label_and_reclaims_its_text(project, examples, annotator):
    attempt = services.claim_next(project=project, annotator=annotator)
    annotation = services.annotation_submit(
        attempt_id=attempt.pk, annotator=annotator, label_ids=[project.labels.first().pk]
    )
    again = services.annotation_undo_last(project=project, annotator=annotator)
    annotation.refresh_from_db()
    assert annotation.status == Annotation.Status.RETRACTED
    assert again.example_id == attempt.example_id and again.status == Attempt.Status.CLAIMED
    assert Example.objects.get(pk=attempt.example_id).submitted_count == 0
    relabel = services.annotation_submit(attempt_id=again.pk, annotator=annotator, label_ids=[project.labels.last().pk])
    assert relabel.status == Annotation.Status.ACCEPTED
    with pytest.raises(Conflict):
        services.annotation_undo_last(project=project, annotator=UserFactory())


def test_claim_query_count_does_not_grow_with_pool(project, annotator):
    from tests.factories import add_examples

    add_examples(project, [f"pool text {i}" for i in range(500)])
    with CaptureQueriesContext(connection) as ctx:
        services.claim_next(project=project, annotator=annotator)
    assert len(ctx.captured_queries) < 10
