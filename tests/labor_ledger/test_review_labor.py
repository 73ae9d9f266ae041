"""Review is labor (issue 16, items 4-5): the reviewer's time on the server's one clock, on the
ledger under `review`, paid by the hour; and the pay policy's choice for rejected work."""

from datetime import timedelta
from decimal import Decimal

import pytest

from annotation import review
from annotation import services as annotation_services
from annotation.models import ActivityClock
from core.errors import Forbidden
from labor_ledger import selectors, services
from labor_ledger.models import Balance, LedgerEntry, TimeCategory
from tests.factories import add_member
from tests.support.annotators import work

from .util import at, live_pay, net

Kind = LedgerEntry.Kind
pytestmark = pytest.mark.django_db


def make_policy(project, admin_user, **terms):
    terms.setdefault("piece_rate", Decimal("0.10"))
    terms.setdefault("floor_hourly_rate", Decimal("12.00"))
    return services.pay_policy_create(
        project=project, created_by=admin_user, effective_from=at(-3600), now=at(-3600), **terms
    )


def review_for(project, reviewer, *, start, seconds, step=5):
    """Heartbeats every `step` s for `seconds`, then close the session."""
    for t in range(0, seconds + 1, step):
        review.review_heartbeat(project=project, reviewer=reviewer, now=start + timedelta(seconds=t))
    return review.review_close(project=project, reviewer=reviewer, now=start + timedelta(seconds=seconds))


def test_review_time_is_on_the_ledger_under_its_own_category_paid_at_the_review_rate(project, admin_user):
    make_policy(project, admin_user, review_hourly_rate=Decimal("36.00"))
    session = review_for(project, admin_user, start=at(0), seconds=100)
    entry = LedgerEntry.objects.get(time_category=TimeCategory.REVIEW)
    assert session.active_seconds == Decimal("100") and session.wall_seconds == Decimal("100")
    assert (entry.kind, entry.annotator_id, entry.active_seconds) == (Kind.HOURLY_PAY, admin_user.pk, Decimal("100"))
    assert entry.amount == Decimal("1.000000")  # 36.00/h x 100 s
    assert entry.counted_seconds == Decimal("100")  # review counts as hours worked (the floor)
    assert selectors.ledger_verify(project=project).ok


def test_review_without_a_review_rate_is_paid_at_the_hourly_rate_else_the_floor(project, admin_user):
    make_policy(project, admin_user)  # floor 12.00/h, no hourly or review rate
    review_for(project, admin_user, start=at(0), seconds=300)
    entry = LedgerEntry.objects.get(time_category=TimeCategory.REVIEW)
    assert (entry.kind, entry.amount) == (Kind.HOURLY_PAY, Decimal("1.000000"))  # 12.00/h x 300 s


def test_a_session_gone_quiet_is_closed_at_its_last_heartbeat(project, admin_user, settings):
    make_policy(project, admin_user)
    review.review_heartbeat(project=project, reviewer=admin_user, now=at(0))
    review.review_heartbeat(project=project, reviewer=admin_user, now=at(10))
    later = at(10 + settings.TALLY_IDLE_CUTOFF_SECONDS + 1)
    assert review.review_sessions_close_stale(project=project, now=later) == 1
    entry = LedgerEntry.objects.get(time_category=TimeCategory.REVIEW)
    assert entry.active_seconds == Decimal("10") and entry.occurred_at == at(10)


def test_labeling_and_reviewing_at_once_never_credit_more_than_wall_time(project, examples, annotator, admin_user):
    """One person, one clock: an admin who labels in one tab and reviews in another."""
    make_policy(project, admin_user)
    admin_labels = admin_user  # the project's admin may label too
    attempt = annotation_services.claim_next(project=project, annotator=admin_labels, now=at(0))
    annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=admin_labels, now=at(0))
    for t in range(0, 61, 5):
        review.review_heartbeat(project=project, reviewer=admin_user, now=at(t))
        annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=admin_labels, now=at(t + 1))
    annotation_services.annotation_submit(
        attempt_id=attempt.pk, annotator=admin_labels, label_ids=[project.labels.first().pk], now=at(62)
    )
    review.review_close(project=project, reviewer=admin_user, now=at(63))
    credited = net(LedgerEntry.objects.filter(annotator=admin_user), "active_seconds")
    assert credited <= Decimal("63")  # the wall time from the first beat to the last
    assert credited > Decimal("55")  # and the time is not lost either
    assert ActivityClock.objects.get(user=admin_user).credited_until == at(63)


def test_only_admins_review(project, annotator, admin_user):
    with pytest.raises(Forbidden):
        review.review_heartbeat(project=project, reviewer=annotator, now=at(0))


# --- rejected work and pay (item 5) ---------------------------------------------------------


def test_by_default_a_rejected_label_stays_paid(project, examples, annotator, admin_user):
    make_policy(project, admin_user)
    attempt, annotation = work(project, annotator, start=at(0), active_seconds=20)
    annotation_services.annotation_review(annotation=annotation, status="rejected", actor=admin_user, now=at(60))
    assert live_pay(annotation).count() == 1
    assert net(LedgerEntry.objects.filter(annotation=annotation)) == Decimal("0.1")
    rejected = LedgerEntry.objects.filter(attempt=attempt, time_category=TimeCategory.REJECTED).get()
    assert rejected.kind == Kind.WORK_TIME and rejected.counted_seconds == Decimal("20")
    balance = Balance.objects.get(project=project, annotator=annotator)
    assert balance.amount == net(LedgerEntry.objects.filter(annotator=annotator)) == Decimal("0.1")
    assert selectors.ledger_verify(project=project).ok


def test_a_policy_may_leave_rejected_work_unpaid(project, examples, annotator, admin_user):
    make_policy(project, admin_user, pay_rejected_work=False)
    attempt, annotation = work(project, annotator, start=at(0), active_seconds=20)
    annotation_services.annotation_review(annotation=annotation, status="rejected", actor=admin_user, now=at(60))
    assert live_pay(annotation).count() == 0
    assert net(LedgerEntry.objects.filter(annotation=annotation)) == 0
    rejected = LedgerEntry.objects.filter(attempt=attempt, time_category=TimeCategory.REJECTED).get()
    assert rejected.kind == Kind.UNPAID_TIME
    assert rejected.counted_seconds == Decimal("20")  # still hours worked for the floor (floor_categories)


def test_a_review_reject_follows_the_policy_and_the_books_reconcile(project, examples, annotator, admin_user):
    make_policy(project, admin_user)
    other = add_member(project)
    _, a1 = work(project, annotator, start=at(0), active_seconds=20)
    annotation_services.project_update(project=project, annotations_per_example=2)
    _, a2 = work(project, other, start=at(100), active_seconds=15)
    assert a1.example_id == a2.example_id
    review.review_decide(
        project=project,
        reviewer=admin_user,
        example_id=a1.example_id,
        decision="reject",
        idempotency_key="k1",
        now=at(200),
    )
    a1.refresh_from_db()
    a2.refresh_from_db()
    assert a1.status == a2.status == "rejected"
    assert live_pay(a1).count() == live_pay(a2).count() == 1  # paid: the default policy
    review.review_close(project=project, reviewer=admin_user, now=at(205))
    for user in (annotator, other, admin_user):
        entries = LedgerEntry.objects.filter(project=project, annotator=user)
        assert Balance.objects.get(project=project, annotator=user).amount == net(entries)
    assert LedgerEntry.objects.filter(annotator=admin_user, time_category=TimeCategory.REVIEW).count() == 1
    assert selectors.ledger_verify(project=project).ok


# --- the Labor Card --------------------------------------------------------------------------


def test_the_labor_card_shows_review_time_and_rejected_labor_either_way(db):
    from django.core.cache import cache

    from labor_ledger.reports import card as labor_card
    from training.hooks import VersionRegistered, version_registered

    from .report_helpers import at as scenario_at
    from .report_helpers import build_scenario, make_version

    cache.clear()
    scenario = build_scenario()
    project = scenario["project"]
    admin = project.memberships.get(role="admin").user
    # the admin reviews for 50 s before v4's snapshot
    review_for(project, admin, start=scenario_at(5000), seconds=50)
    v4 = make_version(
        project,
        sequence=4,
        annotations=[scenario["annotations"]["a1"]],
        snapshot_at=scenario_at(6000),
        parent=scenario["versions"][1],
    )
    version_registered.send(VersionRegistered(version_id=v4.pk, project_id=project.pk))
    card = labor_card.build_card(project=project, version=v4)
    assert card["labor"]["review"]["active_hours"] == round(50 / 3600, 4)
    # what disagreement cost names the adjudication: the same review time
    adjudication = card["disagreement"]["adjudication"]
    assert adjudication["available"] and adjudication["active_hours"] == round(50 / 3600, 4)
    assert card["labor"]["not_used"]["rejected"]["active_hours"] == round(40 / 3600, 4)  # a3, unpaid here
