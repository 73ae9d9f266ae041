"""Writes for review and adjudication, and for routing texts by doubt (issue 16, items 3-4).

Review is labor: a reviewer's time on the review page is a ReviewSession, timed by heartbeats
and credited by the one rule for active time (services._credit_active_time, on the person's
ActivityClock), so labeling, reading the instructions and reviewing, in any tabs and projects,
never add up to more than wall time. The ledger records a session when it closes
(hooks.review_closed), under its own time category.

A decision on a text (accept, correct, reject) is idempotent by its key: the same key again
returns the first decision and writes nothing. Accept and correct write the adjudicated label
as an annotation of source `review`, which training takes as the text's target instead of
the vote (training.selectors.training_snapshot); reject refuses the text's human labels
through services.annotation_review, so their pay follows the pay policy.
"""

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.roles import ADMINS

from . import hooks
from .models import Annotation, Example, Membership, PriorityReason, Project, ReviewDecision, ReviewSession
from .services import _credit_active_time, _idle, _seconds, _validated_labels, annotation_review, close_stale

Decision = ReviewDecision.Decision


# --- the reviewer's clock -------------------------------------------------------------------


def _check_reviewer(*, project: Project, reviewer) -> None:
    if reviewer.is_superuser:
        return
    role = Membership.objects.filter(project=project, user=reviewer).values_list("role", flat=True).first()
    if role not in ADMINS:
        raise Forbidden("Only the project's admins review labels.", code="not_a_reviewer")


def _open_session(*, project: Project, reviewer) -> ReviewSession | None:
    return (
        ReviewSession.objects.select_for_update()
        .filter(project=project, reviewer=reviewer, ended_at__isnull=True)
        .first()
    )


def _close_session(session: ReviewSession, *, end: datetime) -> ReviewSession:
    session.ended_at = end
    session.wall_seconds = _seconds(end - session.started_at)
    session.save(update_fields=["ended_at", "wall_seconds", "active_seconds", "last_active_at", "heartbeat_count"])
    hooks.review_closed.send(hooks.ReviewClosed(session=session))
    return session


def _session_activity(*, project: Project, reviewer, now: datetime) -> ReviewSession:
    """Credit the reviewer's activity up to `now` to their open session (opening one, and
    closing one gone idle first)."""
    session = _open_session(project=project, reviewer=reviewer)
    if session is not None and _idle(session, now):
        _close_session(session, end=session.last_active_at)
        session = None
    if session is None:
        try:
            with transaction.atomic():
                return ReviewSession.objects.create(
                    project=project, reviewer=reviewer, started_at=now, last_active_at=now, heartbeat_count=1
                )
        except IntegrityError:  # a concurrent request opened it first
            session = _open_session(project=project, reviewer=reviewer)
    _credit_active_time(session, now)
    session.heartbeat_count += 1
    session.save(update_fields=["active_seconds", "last_active_at", "heartbeat_count"])
    return session


@transaction.atomic
def review_heartbeat(*, project: Project, reviewer, now: datetime | None = None) -> ReviewSession:
    """The review page is visible and the reviewer active."""
    now = now or timezone.now()
    _check_reviewer(project=project, reviewer=reviewer)
    return _session_activity(project=project, reviewer=reviewer, now=now)


@transaction.atomic
def review_close(*, project: Project, reviewer, now: datetime | None = None) -> ReviewSession | None:
    """The reviewer left the review page: close the session (the ledger records its time)."""
    now = now or timezone.now()
    session = _open_session(project=project, reviewer=reviewer)
    if session is None:
        return None
    if _idle(session, now):
        return _close_session(session, end=session.last_active_at)
    _credit_active_time(session, now)
    return _close_session(session, end=now)


def review_sessions_close_stale(*, project: Project | None = None, now: datetime | None = None) -> int:
    """Close sessions whose page stopped sending heartbeats; their time ends at the last one."""
    return close_stale(ReviewSession, _close_session, project=project, now=now)


# --- decisions ------------------------------------------------------------------------------


def _human_labels(example: Example) -> list[Annotation]:
    return list(
        Annotation.objects.select_for_update(of=("self",))
        .filter(example=example, source=Annotation.Source.HUMAN, status=Annotation.Status.ACCEPTED)
        .prefetch_related("labels")
        .order_by("id")
    )


def leading_labels(annotations: Sequence[Annotation]) -> list[int] | None:
    """The label set most annotations gave (sorted ids); None on a tie or without labels."""
    votes = Counter(tuple(sorted(label.pk for label in a.labels.all())) for a in annotations)
    ranked = votes.most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return list(ranked[0][0])


@transaction.atomic
def review_decide(
    *,
    project: Project,
    reviewer,
    example_id: int,
    decision: str,
    idempotency_key: str,
    label_ids: Sequence[int] = (),
    now: datetime | None = None,
) -> ReviewDecision:
    """Decide one text. `accept`: its leading label becomes the adjudicated label (a tie needs
    `correct`); `correct`: `label_ids` become it; `reject`: every accepted human label on the
    text is rejected (pay follows the policy's pay_rejected_work) and the text returns to the
    pool. The same idempotency key again returns the first decision and changes nothing."""
    now = now or timezone.now()
    _check_reviewer(project=project, reviewer=reviewer)
    key = (idempotency_key or "").strip()
    if not key or len(key) > 100:
        raise ValidationFailed("Each decision needs an idempotency key of 1 to 100 characters.", code="invalid_key")
    if decision not in Decision.values:
        raise ValidationFailed(f"Decide one of: {', '.join(Decision.values)}.", code="invalid_decision")
    example = Example.objects.select_for_update().filter(project=project, pk=example_id).first()
    if example is None:
        raise NotFound("No such text in this project.")
    earlier = ReviewDecision.objects.filter(reviewer=reviewer, idempotency_key=key).first()
    if earlier is not None:
        if earlier.example_id != example.pk or earlier.decision != decision:
            raise Conflict("This idempotency key was already used for another decision.", code="key_reused")
        return earlier
    session = _session_activity(project=project, reviewer=reviewer, now=now)
    humans = _human_labels(example)
    adjudication = None
    chosen: list[int] = []
    if decision == Decision.REJECT:
        if not humans:
            raise Conflict("This text has no accepted labels to reject.", code="nothing_to_review")
        _retire_adjudications(example=example, now=now)
        for annotation in humans:
            annotation_review(
                annotation=annotation,
                status=Annotation.Status.REJECTED,
                actor=reviewer,
                reason="rejected in review",
                now=now,
            )
    else:
        if decision == Decision.ACCEPT:
            lead = leading_labels(humans)
            if lead is None:
                raise Conflict("The labels are tied or missing: choose the label (correct).", code="no_leading_label")
            label_ids = lead
        labels = _validated_labels(project, label_ids)
        chosen = sorted(label.pk for label in labels)
        _retire_adjudications(example=example, now=now)
        adjudication = Annotation.objects.create(
            project=project, example=example, annotator=reviewer, source=Annotation.Source.REVIEW, created_at=now
        )
        adjudication.labels.add(*labels)
    result = ReviewDecision.objects.create(
        project=project,
        example=example,
        reviewer=reviewer,
        decision=decision,
        label_ids=chosen,
        adjudication=adjudication,
        session=session,
        idempotency_key=key,
        created_at=now,
    )
    hooks.labels_changed.send(hooks.LabelsChanged(project_id=project.pk))
    return result


def _retire_adjudications(*, example: Example, now: datetime) -> None:
    """A new decision supersedes the text's earlier adjudicated label (it is kept, retracted)."""
    for old in Annotation.objects.select_for_update().filter(
        example=example, source=Annotation.Source.REVIEW, status=Annotation.Status.ACCEPTED
    ):
        old.status = Annotation.Status.RETRACTED
        old.status_changed_at = now
        old.save(update_fields=["status", "status_changed_at"])


# --- routing by doubt -----------------------------------------------------------------------


# Its own advisory lock, not the claim queue's: a submit routes while holding its ledger chain
# lock, and a claim takes the queue lock before expiring claims into the ledger, so sharing the
# queue lock could deadlock the two. Only routing takes this one.
_ROUTING_LOCK_NAMESPACE = 0x7A12


def _lock_routing_budget(project: Project) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_ROUTING_LOCK_NAMESPACE, project.pk % 2**31])


def routing_budget_used(project: Project) -> int:
    return (
        Example.objects.filter(project=project, extra_annotations__gt=0).aggregate(n=Sum("extra_annotations"))["n"] or 0
    )


@transaction.atomic(savepoint=False)  # inside the submit's own transaction (training's handler)
def example_route_for_doubt(*, example_id: int, reason: str) -> bool:
    """Ask for one more annotator on a labeled text, within the project's routing budget and
    its doubt_max_annotators. Returns whether it was routed. Idempotent per label count: a
    text already waiting for a routed label is not routed again."""
    if reason not in (PriorityReason.DOUBT, PriorityReason.DISAGREEMENT):
        raise ValidationFailed(f"Unknown routing reason {reason!r}.")
    example = Example.objects.select_related("project").filter(pk=example_id).first()
    if example is None:
        return False
    project = example.project
    if not project.doubt_routing:
        return False
    _lock_routing_budget(project)  # the budget is read and spent one text at a time
    example.refresh_from_db(fields=["submitted_count", "extra_annotations"])
    wanted = project.annotations_per_example + example.extra_annotations
    if example.submitted_count < wanted or wanted >= project.doubt_max_annotators:
        return False  # still waiting for labels already asked for, or at the cap
    if routing_budget_used(project) >= project.doubt_budget:
        return False
    Example.objects.filter(pk=example.pk).update(extra_annotations=F("extra_annotations") + 1, routed_reason=reason)
    return True
