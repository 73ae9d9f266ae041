"""Unit tests of the ledger's services, driven through annotation.services with an explicit clock."""

from decimal import Decimal

import pytest

from annotation import hooks
from annotation import services as annotation_services
from annotation.models import Annotation, Attempt, Membership
from core.errors import Conflict, ValidationFailed
from labor_ledger import chain, selectors, services
from labor_ledger.models import Balance, ChainHead, LedgerEntry, PayPolicy, TimeCategory
from tests.factories import UserFactory, add_member
from tests.support.annotators import work

from .util import at, live_pay, net

Kind = LedgerEntry.Kind


def entries(**filters):
    return LedgerEntry.objects.filter(**filters).order_by("seq")


# --- submissions ----------------------------------------------------------------------------


def test_a_submission_writes_its_time_and_its_piece_pay_in_the_same_transaction(project, examples, annotator, policy):
    # when
    attempt, annotation = work(project, annotator, start=at(0), active_seconds=30)
    # then
    time_entry, pay = entries(attempt=attempt)
    assert (time_entry.kind, time_entry.time_category) == (Kind.WORK_TIME, TimeCategory.SUBMITTED)
    assert time_entry.active_seconds == attempt.active_seconds == Decimal("30")
    assert time_entry.wall_seconds == attempt.wall_seconds
    assert time_entry.counted_seconds == Decimal("30")
    assert time_entry.floor_amount == Decimal("0.100000")  # 12.00/h x 30 s
    assert (pay.kind, pay.amount, pay.units, pay.annotation_id) == (Kind.PIECE_PAY, Decimal("0.1"), 1, annotation.pk)
    assert pay.client_amount == Decimal("0.25")
    assert pay.policy_id == policy.pk and pay.currency == project.currency
    assert pay.acting_user_id == annotator.pk
    assert pay.period_start == at(0).date()


def test_a_failed_submission_leaves_no_entry(project, examples, annotator, policy):
    attempt = annotation_services.claim_next(project=project, annotator=annotator, now=at(0))
    with pytest.raises(ValidationFailed):
        annotation_services.annotation_submit(attempt_id=attempt.pk, annotator=annotator, label_ids=[], now=at(5))
    assert not LedgerEntry.objects.exists()


def test_work_and_its_entries_commit_together_or_not_at_all(project, examples, annotator, policy, monkeypatch):
    attempt = annotation_services.claim_next(project=project, annotator=annotator, now=at(0))

    def broken(entry):
        raise RuntimeError("the ledger is down")

    monkeypatch.setattr(chain, "entry_hash", broken)
    with pytest.raises(RuntimeError):
        annotation_services.annotation_submit(
            attempt_id=attempt.pk, annotator=annotator, label_ids=[project.labels.first().pk], now=at(5)
        )
    attempt.refresh_from_db()
    assert attempt.status == Attempt.Status.CLAIMED  # the submission was rolled back with the entry
    assert not Annotation.objects.exists() and not LedgerEntry.objects.exists()


def test_a_retry_with_the_same_idempotency_key_pays_once(project, examples, annotator, policy):
    attempt, annotation = work(project, annotator, start=at(0), key="submit-1")
    again = annotation_services.annotation_submit(
        attempt_id=attempt.pk,
        annotator=annotator,
        label_ids=[project.labels.first().pk],
        idempotency_key="submit-1",
        now=at(20),
    )
    assert again.pk == annotation.pk
    assert live_pay(annotation).count() == 1
    assert net(entries(annotator=annotator)) == Decimal("0.1")


def test_the_hooks_are_idempotent_when_called_again(project, examples, annotator, policy):
    attempt, annotation = work(project, annotator, start=at(0))
    before = LedgerEntry.objects.count()
    closed = hooks.AttemptClosed(attempt=attempt, annotation=annotation, acting_user_id=annotator.pk)
    assert services.attempt_closed(closed) == []
    changed = hooks.AnnotationStatusChanged(
        annotation=annotation, previous_status="accepted", acting_user_id=None, reason=""
    )
    assert services.annotation_status_changed(changed) == []
    assert LedgerEntry.objects.count() == before


def test_gold_and_overlap_items_pay_their_own_rates(project, examples, annotator, admin_user):
    services.pay_policy_create(
        project=project,
        created_by=admin_user,
        effective_from=at(-60),
        now=at(-60),
        piece_rate=Decimal("0.10"),
        gold_piece_rate=Decimal("0.02"),
        overlap_piece_rate=Decimal("0.07"),
    )
    annotation_services.project_update(project=project, annotations_per_example=2)
    examples[0].gold_label = project.labels.first()
    examples[0].save()
    other = add_member(project)
    _, gold = work(project, annotator, start=at(0))  # example 0: gold
    _, first = work(project, annotator, start=at(20))  # example 1: first label
    _, gold_again = work(project, other, start=at(40))  # example 0: gold wins over overlap
    _, overlap = work(project, other, start=at(60))  # example 1: second label
    assert [live_pay(a).get().amount for a in (gold, first, gold_again, overlap)] == [
        Decimal("0.02"),
        Decimal("0.10"),
        Decimal("0.02"),
        Decimal("0.07"),
    ]


# --- skipped, expired, between tasks ------------------------------------------------------


def test_skipped_and_expired_attempts_are_recorded_as_unpaid_time(project, examples, annotator, policy, settings):
    skipped, _ = work(project, annotator, start=at(0), active_seconds=15, skip=True)
    held = annotation_services.claim_next(project=project, annotator=annotator, now=at(20))
    annotation_services.attempt_heartbeat(attempt_id=held.pk, annotator=annotator, now=at(20))
    annotation_services.attempt_heartbeat(attempt_id=held.pk, annotator=annotator, now=at(25))
    annotation_services.attempts_expire(project=project, now=at(25 + settings.TALLY_CLAIM_LEASE_SECONDS + 1))
    held.refresh_from_db()
    assert held.status == Attempt.Status.EXPIRED

    skip_entry = entries(attempt=skipped).exclude(time_category=TimeCategory.BETWEEN_TASKS).get()
    expire_entry = entries(attempt=held).exclude(time_category=TimeCategory.BETWEEN_TASKS).get()
    assert (skip_entry.kind, skip_entry.time_category, skip_entry.amount) == (Kind.UNPAID_TIME, "skipped", 0)
    assert skip_entry.active_seconds == Decimal("15")
    assert (expire_entry.kind, expire_entry.time_category, expire_entry.amount) == (Kind.UNPAID_TIME, "expired", 0)
    assert expire_entry.active_seconds == Decimal("5")
    # They are unpaid but count toward the floor by default.
    assert skip_entry.counted_seconds == Decimal("15") and expire_entry.counted_seconds == Decimal("5")


def test_time_between_tasks_in_a_session_is_recorded_but_a_break_is_not(project, examples, annotator, policy, settings):
    work(project, annotator, start=at(0), active_seconds=10)
    second, _ = work(project, annotator, start=at(13), active_seconds=10)  # 3 s between tasks
    third, _ = work(project, annotator, start=at(23 + settings.TALLY_LEDGER_SESSION_GAP_SECONDS + 1))  # a break
    between = entries(time_category=TimeCategory.BETWEEN_TASKS).get()
    assert between.attempt_id == second.pk
    assert (between.kind, between.wall_seconds, between.active_seconds) == (Kind.UNPAID_TIME, Decimal("3"), 0)
    assert between.counted_seconds == 0  # not in the default floor categories
    assert not entries(attempt=third, time_category=TimeCategory.BETWEEN_TASKS).exists()


# --- hourly pay ---------------------------------------------------------------------------


@pytest.mark.parametrize(("clock", "expected"), [("active", Decimal("0.075")), ("wall", Decimal("0.2"))])
def test_an_hourly_policy_pays_the_clock_it_names(project, examples, annotator, admin_user, clock, expected):
    services.pay_policy_create(
        project=project,
        created_by=admin_user,
        effective_from=at(-60),
        now=at(-60),
        hourly_rate=Decimal("18.00"),
        hourly_clock=clock,
    )
    attempt = annotation_services.claim_next(project=project, annotator=annotator, now=at(0))
    for t in (0, 5, 10):
        annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(t))
    # 10 s active, then 30 s idle before the submit (credited as one 5 s interval): 15 s active, 40 s wall
    annotation = annotation_services.annotation_submit(
        attempt_id=attempt.pk, annotator=annotator, label_ids=[project.labels.first().pk], now=at(40)
    )
    attempt.refresh_from_db()
    assert (attempt.active_seconds, attempt.wall_seconds) == (Decimal("15"), Decimal("40"))
    time_entry = entries(attempt=attempt, kind=Kind.HOURLY_PAY).get()
    assert time_entry.amount == expected  # 18/h x 15 s or x 40 s
    assert time_entry.counted_seconds == Decimal("15")  # the floor counts active time by default
    assert live_pay(annotation).get().amount == 0  # the example is recorded, priced by the hour


def test_an_hourly_policy_pays_skipped_time_only_when_it_lists_it(project, examples, annotator, admin_user):
    services.pay_policy_create(
        project=project,
        created_by=admin_user,
        effective_from=at(-60),
        now=at(-60),
        hourly_rate=Decimal("36"),
        hourly_categories=["submitted"],
    )
    skipped, _ = work(project, annotator, start=at(0), active_seconds=10, skip=True)
    entry = entries(attempt=skipped).exclude(time_category=TimeCategory.BETWEEN_TASKS).get()
    assert (entry.kind, entry.amount) == (Kind.UNPAID_TIME, 0)
    services.pay_policy_create(
        project=project,
        created_by=admin_user,
        effective_from=at(100),
        now=at(100),
        hourly_rate=Decimal("36"),
        hourly_categories=["submitted", "skipped"],
    )
    skipped2, _ = work(project, annotator, start=at(200), active_seconds=10, skip=True)
    entry2 = entries(attempt=skipped2).exclude(time_category=TimeCategory.BETWEEN_TASKS).get()
    assert (entry2.kind, entry2.amount) == (Kind.HOURLY_PAY, Decimal("0.1"))


# --- retract, reject, re-accept ----------------------------------------------------------


def test_undo_reverses_the_pay_and_moves_the_time_to_retracted(project, examples, annotator, policy):
    attempt, annotation = work(project, annotator, start=at(0), active_seconds=20)
    annotation_services.annotation_undo_last(project=project, annotator=annotator, now=at(30))
    annotation.refresh_from_db()
    assert annotation.status == Annotation.Status.RETRACTED
    assert not live_pay(annotation).exists()
    pay_reversal = entries(kind=Kind.REVERSAL, reversed_kind=Kind.PIECE_PAY).get()
    assert pay_reversal.amount == Decimal("-0.1") and pay_reversal.units == -1
    assert pay_reversal.acting_user_id == annotator.pk
    live_time = entries(attempt=attempt).exclude(kind=Kind.REVERSAL).filter(reversed_by__isnull=True)
    assert [(e.time_category, e.active_seconds) for e in live_time.exclude(kind=Kind.PIECE_PAY)] == [
        ("retracted", Decimal("20"))
    ]
    # The time did not vanish: the attempt's seconds still add up to what was worked.
    assert net(entries(attempt=attempt), "active_seconds") == Decimal("20")
    assert net(entries(attempt=attempt), "units") == 0


def test_reject_then_reaccept_pays_exactly_once_net_by_new_entries(project, examples, annotator, policy, admin_user):
    attempt, annotation = work(project, annotator, start=at(0), active_seconds=20)
    annotation_services.annotation_review(
        annotation=annotation, status="rejected", actor=admin_user, reason="spam", now=at(60)
    )
    assert net(entries(annotation=annotation)) == 0
    reversal = entries(kind=Kind.REVERSAL, reversed_kind=Kind.PIECE_PAY).get()
    assert reversal.acting_user_id == admin_user.pk and "spam" in reversal.reason
    rejected_time = entries(attempt=attempt, time_category=TimeCategory.REJECTED).get()
    assert rejected_time.kind == Kind.UNPAID_TIME and rejected_time.active_seconds == Decimal("20")

    annotation_services.annotation_review(annotation=annotation, status="accepted", actor=admin_user, now=at(120))
    assert live_pay(annotation).count() == 1
    assert net(entries(annotation=annotation)) == Decimal("0.1")
    assert net(entries(attempt=attempt), "units") == 1
    # every entry written is still there: nothing was edited
    kinds = list(entries(attempt=attempt).values_list("kind", "time_category"))
    assert kinds.count((Kind.PIECE_PAY, "")) == 2
    assert selectors.ledger_verify(project=project).ok


def test_a_reaccepted_label_is_paid_under_the_policy_it_was_worked_under(
    project, examples, annotator, policy, admin_user
):
    _, annotation = work(project, annotator, start=at(0))
    annotation_services.annotation_review(annotation=annotation, status="rejected", actor=admin_user, now=at(60))
    services.pay_policy_create(
        project=project, created_by=admin_user, effective_from=at(100), now=at(100), piece_rate=Decimal("5")
    )
    annotation_services.annotation_review(annotation=annotation, status="accepted", actor=admin_user, now=at(200))
    assert live_pay(annotation).get().amount == Decimal("0.1")


def test_review_refuses_to_accept_a_retracted_label(project, examples, annotator, policy, admin_user):
    _, annotation = work(project, annotator, start=at(0))
    annotation_services.annotation_undo_last(project=project, annotator=annotator, now=at(30))
    annotation.refresh_from_db()
    with pytest.raises(Conflict):
        annotation_services.annotation_review(annotation=annotation, status="accepted", actor=admin_user, now=at(40))


# --- policies -----------------------------------------------------------------------------


def test_policy_versions_apply_from_their_effective_time(project, examples, annotator, policy, admin_user):
    v2 = services.pay_policy_create(
        project=project, created_by=admin_user, effective_from=at(100), now=at(50), piece_rate=Decimal("0.30")
    )
    assert v2.version == 2
    _, before = work(project, annotator, start=at(60))
    _, after = work(project, annotator, start=at(100))
    assert live_pay(before).get().policy_id == policy.pk
    assert live_pay(after).get().policy_id == v2.pk and live_pay(after).get().amount == Decimal("0.3")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"effective_from": at(-10)}, "past"),
        ({"currency": "EUR"}, "USD"),
        ({"piece_rate": Decimal("-1")}, "piece_rate"),
        ({"floor_categories": ["coffee"]}, "floor_categories"),
        ({"tip": 1}, "Unknown"),
    ],
)
def test_policy_create_refuses_bad_terms(project, admin_user, kwargs, message):
    with pytest.raises(ValidationFailed, match=message):
        services.pay_policy_create(project=project, created_by=admin_user, now=at(0), **kwargs)


def test_a_new_version_must_start_after_the_latest(project, admin_user, policy):
    with pytest.raises(ValidationFailed, match="start later"):
        services.pay_policy_create(
            project=project, created_by=admin_user, effective_from=policy.effective_from, now=policy.effective_from
        )
    assert PayPolicy.objects.count() == 1


def test_without_a_policy_time_is_still_recorded(project, examples, annotator):
    attempt, annotation = work(project, annotator, start=at(0), active_seconds=10)
    time_entry = entries(attempt=attempt, kind=Kind.WORK_TIME).get()
    assert time_entry.policy is None and time_entry.counted_seconds == Decimal("10")
    assert live_pay(annotation).get().amount == 0


# --- instruction reading -----------------------------------------------------------------


def test_instruction_reading_is_timed_by_heartbeats_and_recorded_when_closed(project, annotator, policy):
    for t in (0, 5, 10, 15):
        annotation_services.instructions_heartbeat(project=project, annotator=annotator, now=at(t))
    reading = annotation_services.instructions_close(project=project, annotator=annotator, now=at(18))
    entry = entries(reading=reading).get()
    assert (entry.kind, entry.time_category) == (Kind.UNPAID_TIME, TimeCategory.INSTRUCTION_READING)
    assert entry.active_seconds == Decimal("18") and entry.wall_seconds == Decimal("18")
    assert entry.counted_seconds == Decimal("18")  # counts toward the floor by default
    assert annotation_services.instructions_close(project=project, annotator=annotator, now=at(19)) is None


def test_an_idle_reading_closes_at_its_last_heartbeat(project, annotator, policy, settings):
    annotation_services.instructions_heartbeat(project=project, annotator=annotator, now=at(0))
    annotation_services.instructions_heartbeat(project=project, annotator=annotator, now=at(5))
    later = at(5 + settings.TALLY_IDLE_CUTOFF_SECONDS + 60)
    second = annotation_services.instructions_heartbeat(project=project, annotator=annotator, now=later)
    first_entry = entries(time_category=TimeCategory.INSTRUCTION_READING).get()
    assert first_entry.active_seconds == Decimal("5") and first_entry.occurred_at == at(5)
    assert second.started_at == later and second.ended_at is None
    assert annotation_services.instruction_readings_close_stale(now=later + (later - at(0))) == 1
    assert entries(time_category=TimeCategory.INSTRUCTION_READING).count() == 2


# --- manual entries -----------------------------------------------------------------------


def test_bonus_needs_a_reason_and_pays_once_per_key(project, annotator, admin_user, policy):
    kwargs = dict(
        project=project,
        annotator=annotator,
        kind="bonus",
        amount=Decimal("2.50"),
        actor=admin_user,
        idempotency_key="bonus-jan",
        now=at(0),
    )
    with pytest.raises(ValidationFailed):
        services.manual_entry_create(reason=" ", **kwargs)
    one = services.manual_entry_create(reason="great work", **kwargs)
    two = services.manual_entry_create(reason="great work", **kwargs)
    assert one.pk == two.pk and one.acting_user_id == admin_user.pk
    with pytest.raises(Conflict):
        services.manual_entry_create(reason="again", **{**kwargs, "amount": Decimal("3")})
    with pytest.raises(ValidationFailed):
        services.manual_entry_create(reason="x", **{**kwargs, "amount": Decimal("-1"), "idempotency_key": "n"})
    with pytest.raises(ValidationFailed):
        services.manual_entry_create(reason="x", **{**kwargs, "annotator": UserFactory(), "idempotency_key": "m"})


# --- the chain ----------------------------------------------------------------------------


def test_entries_form_a_hash_chain_per_project(project, examples, annotator, policy, admin_user):
    other_project = annotation_services.project_create(name="Other", labels=["a", "b"], created_by=admin_user)
    add_member(other_project, Membership.Role.ANNOTATOR, annotator)
    annotation_services.membership_set(project=other_project, user=annotator, role="annotator")
    from tests.factories import add_examples

    add_examples(other_project, ["other text one", "other text two"])
    work(project, annotator, start=at(0))
    work(other_project, annotator, start=at(30))
    work(project, annotator, start=at(60), skip=True)
    for p in (project, other_project):
        chained = list(entries(project=p))
        assert [e.seq for e in chained] == list(range(1, len(chained) + 1))
        assert chained[0].prev_hash == chain.GENESIS
        for before, after in zip(chained, chained[1:], strict=False):
            assert after.prev_hash == before.entry_hash
        assert all(chain.entry_hash(e) == e.entry_hash for e in chained)
        head = ChainHead.objects.get(project=p)
        assert (head.seq, head.last_hash) == (chained[-1].seq, chained[-1].entry_hash)


def test_balances_follow_the_entries(project, examples, annotator, policy, admin_user):
    other = add_member(project)
    work(project, annotator, start=at(0))
    work(project, other, start=at(0))
    _, annotation = work(project, annotator, start=at(30))
    annotation_services.annotation_review(annotation=annotation, status="rejected", actor=admin_user, now=at(60))
    for user in (annotator, other):
        balance = Balance.objects.get(project=project, annotator=user)
        assert balance.amount == net(entries(project=project, annotator=user))
        assert balance.entry_count == entries(project=project, annotator=user).count()
    assert Balance.objects.get(annotator=annotator).amount == Decimal("0.1")
