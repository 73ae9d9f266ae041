"""Annotators contest their time (issue 14, item 6): a dispute on an attempt or a day, decided
once by an admin; an accepted one is an adjustment entry in the chain, naming both."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from annotation import services as annotation_services
from annotation.models import Membership
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from labor_ledger import selectors, services, settlement
from labor_ledger.models import LedgerEntry, TimeDispute, TimeDisputeDecision
from tests.factories import UserFactory, add_member

from .util import at

Kind = LedgerEntry.Kind


def idle_attempt(project, annotator, *, start, wall=60):
    """Shown at `start`, a heartbeat 5 s later, then nothing until submitted `wall` s later:
    the server credits 10 s active (the long gap vouches for one interval), the wall is `wall`."""
    attempt = annotation_services.claim_next(project=project, annotator=annotator, now=start)
    annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=start)
    annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=start + timedelta(seconds=5))
    annotation_services.annotation_submit(
        attempt_id=attempt.pk,
        annotator=annotator,
        label_ids=[project.labels.first().pk],
        now=start + timedelta(seconds=wall),
    )
    attempt.refresh_from_db()
    return attempt


def dispute_on(project, annotator, attempt, claimed=50, now=None):
    return services.time_dispute_create(
        project=project,
        annotator=annotator,
        attempt_id=attempt.pk,
        claimed_seconds=claimed,
        note="I was reading the text the whole time; the mouse did not move.",
        now=now or at(120),
    )


# --- filing ---------------------------------------------------------------------------------------


def test_an_annotator_contests_an_attempt_and_the_dispute_records_what_the_ledger_had(
    project, examples, annotator, policy
):
    attempt = idle_attempt(project, annotator, start=at(0))
    assert (attempt.active_seconds, attempt.wall_seconds) == (Decimal("10"), Decimal("60"))
    dispute = dispute_on(project, annotator, attempt)
    assert dispute.recorded_seconds == Decimal("10") and dispute.claimed_seconds == Decimal("50")
    assert dispute.day == at(0).date() and dispute.subject == "attempt"
    assert selectors.dispute_status(dispute) == "open"
    assert selectors.open_disputes_count(project=project) == 1


@pytest.mark.parametrize(
    ("claimed", "why"),
    [
        (-5, "more than zero"),
        (0, "more than zero"),
        (61, "more than this text was on your screen"),
        (25 * 3600, "24 hours"),
        (8, "already records 0:10"),
    ],
)
def test_bad_durations_on_an_attempt_are_refused_with_a_clear_message(
    project, examples, annotator, policy, claimed, why
):
    attempt = idle_attempt(project, annotator, start=at(0))
    with pytest.raises(ValidationFailed, match=why):
        dispute_on(project, annotator, attempt, claimed=claimed)
    assert not TimeDispute.objects.exists()


def test_a_day_claim_is_bounded_by_the_days_wall_time(project, examples, annotator, policy):
    idle_attempt(project, annotator, start=at(0))  # at(0) is noon UTC
    day = at(0).date()
    # 13 h of a day that is 12 h 2 min old: refused; 11 h: accepted as a dispute
    with pytest.raises(ValidationFailed, match="wall time"):
        services.time_dispute_create(
            project=project, annotator=annotator, day=day, claimed_seconds=13 * 3600, note="n", now=at(120)
        )
    with pytest.raises(ValidationFailed, match="not begun"):
        services.time_dispute_create(
            project=project,
            annotator=annotator,
            day=day + timedelta(days=1),
            claimed_seconds=60,
            note="n",
            now=at(120),
        )
    dispute = services.time_dispute_create(
        project=project, annotator=annotator, day=day, claimed_seconds=11 * 3600, note="n", now=at(120)
    )
    assert dispute.recorded_seconds == Decimal("10") and dispute.attempt_id is None


def test_someone_elses_attempt_is_not_found_and_an_open_one_is_a_conflict(project, examples, annotator, policy):
    mine = idle_attempt(project, annotator, start=at(0))
    other = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="other-ann"))
    with pytest.raises(NotFound):
        dispute_on(project, other, mine)
    with pytest.raises(NotFound):
        services.time_dispute_create(
            project=project, annotator=annotator, attempt_id=10**9, claimed_seconds=5, note="n", now=at(120)
        )
    still_open = annotation_services.claim_next(project=project, annotator=annotator, now=at(100))
    with pytest.raises(Conflict, match="still open"):
        dispute_on(project, annotator, still_open)


def test_one_open_dispute_per_subject_and_a_note_is_required(project, examples, annotator, policy):
    attempt = idle_attempt(project, annotator, start=at(0))
    with pytest.raises(ValidationFailed, match="note"):
        services.time_dispute_create(
            project=project, annotator=annotator, attempt_id=attempt.pk, claimed_seconds=30, note="  ", now=at(120)
        )
    dispute_on(project, annotator, attempt)
    with pytest.raises(Conflict, match="already have an open dispute"):
        dispute_on(project, annotator, attempt, claimed=40)


# --- deciding -----------------------------------------------------------------------------------


def test_accepting_writes_one_adjustment_entry_naming_the_admin_and_the_dispute(
    project, examples, annotator, admin_user, policy
):
    attempt = idle_attempt(project, annotator, start=at(0))
    dispute = dispute_on(project, annotator, attempt)
    decision = services.time_dispute_decide(
        dispute=dispute, actor=admin_user, accept=True, reason="checked the logs", now=at(300)
    )
    entry = decision.entry
    assert decision.outcome == TimeDisputeDecision.Outcome.ACCEPTED and decision.granted_seconds == Decimal("40")
    assert (entry.kind, entry.annotator_id, entry.acting_user_id) == (Kind.ADJUSTMENT, annotator.pk, admin_user.pk)
    assert f"time dispute #{dispute.pk}" in entry.reason and admin_user.username in entry.reason
    assert entry.attempt_id == attempt.pk and entry.period_start == at(0).date()
    # 40 s granted count as hours worked and are paid at the floor (12.00/h): 0.133333
    assert entry.counted_seconds == Decimal("40") and entry.active_seconds == 0
    assert entry.amount == entry.floor_amount == Decimal("0.133333")
    assert selectors.ledger_verify(project=project).ok
    assert selectors.open_disputes_count(project=project) == 0
    # decided once: a second decision is a conflict, and nothing more is written
    with pytest.raises(Conflict, match="already closed"):
        services.time_dispute_decide(dispute=dispute, actor=admin_user, accept=False, reason="no", now=at(301))
    assert LedgerEntry.objects.filter(kind=Kind.ADJUSTMENT).count() == 1


def test_granted_time_is_neither_paid_twice_nor_missed_by_the_floor_top_up(
    project, examples, annotator, admin_user, policy
):
    attempt = idle_attempt(project, annotator, start=at(0))
    dispute = dispute_on(project, annotator, attempt)
    services.time_dispute_decide(dispute=dispute, actor=admin_user, accept=True, now=at(300))
    (settled,) = settlement.project_settle(project=project, period=at(0).date(), actor=admin_user, now=at(hours=24))
    # 10 s measured + 40 s granted are hours worked: a floor of 50 s at 12.00/h; the granted
    # time carries its own floor as pay (0.133333), so it adds nothing to the top-up
    assert settled.counted_seconds == Decimal("50")
    assert settled.floor_target == Decimal("0.033333") + Decimal("0.133333")
    assert settled.gross == Decimal("0.100000") + Decimal("0.133333")
    assert settled.top_up == 0 and settled.payable == Decimal("0.23")


def test_rejecting_needs_a_reason_and_writes_nothing_to_the_ledger(project, examples, annotator, admin_user, policy):
    attempt = idle_attempt(project, annotator, start=at(0))
    dispute = dispute_on(project, annotator, attempt)
    before = LedgerEntry.objects.count()
    with pytest.raises(ValidationFailed, match="why"):
        services.time_dispute_decide(dispute=dispute, actor=admin_user, accept=False, reason="", now=at(300))
    decision = services.time_dispute_decide(
        dispute=dispute, actor=admin_user, accept=False, reason="the tab was in the background", now=at(300)
    )
    assert decision.outcome == "rejected" and decision.entry is None
    assert LedgerEntry.objects.count() == before


def test_granted_seconds_are_bounded_and_admins_never_decide_their_own(project, examples, admin_user, policy):
    attempt = idle_attempt(project, admin_user, start=at(0))  # admins label too
    dispute = dispute_on(project, admin_user, attempt)
    with pytest.raises(Forbidden):
        services.time_dispute_decide(dispute=dispute, actor=admin_user, accept=True, now=at(300))
    other_admin = add_member(project, Membership.Role.ADMIN, UserFactory(username="second-admin"))
    for granted in ("-1", "0", "41"):
        with pytest.raises(ValidationFailed, match="Grant more than 0"):
            services.time_dispute_decide(
                dispute=dispute, actor=other_admin, accept=True, granted_seconds=granted, now=at(300)
            )
    decision = services.time_dispute_decide(
        dispute=dispute, actor=other_admin, accept=True, granted_seconds="15", now=at(300)
    )
    assert decision.entry.counted_seconds == Decimal("15")


def test_disputes_and_decisions_are_append_only(project, examples, annotator, admin_user, policy):
    from django.db import connection, transaction

    dispute = dispute_on(project, annotator, idle_attempt(project, annotator, start=at(0)))
    with pytest.raises(Exception, match="append-only"):
        dispute.save()
    if connection.vendor == "postgresql":
        with pytest.raises(Exception, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("UPDATE labor_ledger_timedispute SET note = 'edited' WHERE id = %s", [dispute.pk])


# --- the API ------------------------------------------------------------------------------------


@pytest.fixture
def closed_attempt(project, examples, annotator, policy):
    return idle_attempt(project, annotator, start=timezone.now() - timedelta(minutes=5))


def url(project, *rest):
    return f"/api/projects/{project.slug}/time-disputes/" + "".join(f"{r}/" for r in rest)


def test_api_annotator_files_and_lists_only_their_own(project, annotator, closed_attempt, api):
    client = api(annotator)
    answer = client.post(url(project), {"attempt": closed_attempt.pk, "claimed_seconds": "45", "note": "n"})
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert (body["status"], body["subject"], body["recorded_seconds"]) == ("open", "attempt", "10.000")
    other = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="someone"))
    assert api(other).get(url(project)).json() == []
    assert [d["id"] for d in client.get(url(project)).json()] == [body["id"]]
    assert answer["Cache-Control"].startswith("max-age=0") or "no-store" in answer["Cache-Control"]


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"claimed_seconds": "-30", "note": "n"}, 400),  # neither attempt nor day; and negative
        ({"claimed_seconds": "30", "note": "n", "day": "2020-01-01", "attempt": 1}, 400),  # both
        ({"claimed_seconds": "-30", "note": "n", "attempt": "ATTEMPT"}, 400),
        ({"claimed_seconds": "86401", "note": "n", "attempt": "ATTEMPT"}, 400),
        ({"claimed_seconds": "99999999", "note": "n", "day": "TODAY"}, 400),
        ({"claimed_seconds": "30", "note": "n", "attempt": 10**9}, 404),
    ],
)
def test_api_bad_input_gets_a_clear_400_or_404(project, annotator, closed_attempt, api, payload, status):
    payload = dict(payload)
    if payload.get("attempt") == "ATTEMPT":
        payload["attempt"] = closed_attempt.pk
    if payload.get("day") == "TODAY":
        payload["day"] = timezone.now().date().isoformat()
    answer = api(annotator).post(url(project), payload, format="json")
    assert answer.status_code == status, answer.content
    assert answer.json()  # says why
    assert not TimeDispute.objects.exists()


def test_api_someone_elses_attempt_is_a_404(project, annotator, closed_attempt, api):
    other = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="someone"))
    answer = api(other).post(url(project), {"attempt": closed_attempt.pk, "claimed_seconds": "45", "note": "n"})
    assert answer.status_code == 404


def test_api_admin_lists_and_decides_and_a_closed_dispute_is_a_409(
    project, annotator, admin_user, auditor, closed_attempt, api
):
    filed = api(annotator).post(url(project), {"attempt": closed_attempt.pk, "claimed_seconds": "45", "note": "n"})
    dispute_id = filed.json()["id"]
    assert [d["id"] for d in api(auditor).get(url(project), {"status": "open"}).json()] == [dispute_id]
    # annotators and auditors do not decide
    assert api(annotator).post(url(project, dispute_id, "decision"), {"outcome": "accept"}).status_code == 403
    assert api(auditor).post(url(project, dispute_id, "decision"), {"outcome": "accept"}).status_code == 403
    answer = api(admin_user).post(url(project, dispute_id, "decision"), {"outcome": "accept", "reason": "ok"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["status"] == "accepted" and body["decision"]["decided_by"] == admin_user.username
    assert body["decision"]["granted_seconds"] == "35.000" and body["decision"]["entry_seq"]
    again = api(admin_user).post(url(project, dispute_id, "decision"), {"outcome": "reject", "reason": "no"})
    assert again.status_code == 409 and again.json()["code"] == "dispute_closed"
    assert api(admin_user).get(url(project), {"status": "open"}).json() == []
    assert api(admin_user).post(url(project, 10**9, "decision"), {"outcome": "accept"}).status_code == 404
