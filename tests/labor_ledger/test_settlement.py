"""Settlement: floor top-ups per annotator, the rounding rule, idempotency, closed periods."""

from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation import services as annotation_services
from core.errors import ValidationFailed
from labor_ledger import money, selectors, services
from labor_ledger import settlement as ledger_settlement
from labor_ledger.models import ChainHead, LedgerEntry, Settlement
from tests.factories import add_examples, add_member, make_project
from tests.support.annotators import work

from .util import at, net

Kind = LedgerEntry.Kind
DAY = date(2030, 1, 7)


def test_floor_top_up_is_computed_per_annotator_never_from_a_median(project, examples, annotator, admin_user):
    # given: 36.00/h floor, 0.10 per text; three annotators at different speeds
    services.pay_policy_create(
        project=project,
        created_by=admin_user,
        effective_from=at(-60),
        now=at(-60),
        piece_rate=Decimal("0.10"),
        floor_hourly_rate=Decimal("36.00"),
    )
    fast, median, slow = annotator, add_member(project), add_member(project)
    work(project, fast, start=at(0), active_seconds=5)  # 0.10 for 5 s: floor 0.05, above it
    work(project, median, start=at(0), active_seconds=10)  # 0.10 for 10 s: floor 0.10, at it
    work(project, slow, start=at(0), active_seconds=60)  # 0.10 for 60 s: floor 0.60, below it
    # when
    settlements = {s.annotator_id: s for s in ledger_settlement.settle_due(project=project, now=at(days=1))}
    # then: only the slow one is topped up, to their own floor (a median rule would top up nobody)
    assert settlements[fast.pk].top_up == 0 and settlements[median.pk].top_up == 0
    assert settlements[slow.pk].top_up == Decimal("0.5")
    assert settlements[slow.pk].payable == Decimal("0.60")
    top_up = LedgerEntry.objects.get(kind=Kind.FLOOR_TOP_UP)
    assert (top_up.annotator_id, top_up.amount, top_up.period_start) == (slow.pk, Decimal("0.5"), DAY)
    for s in settlements.values():
        assert s.payable >= s.floor_target
        assert net(LedgerEntry.objects.filter(annotator_id=s.annotator_id, period_start=DAY)) == s.payable


def test_settling_twice_changes_nothing(project, examples, annotator, policy):
    work(project, annotator, start=at(0), active_seconds=60)
    first = ledger_settlement.settle_due(project=project, now=at(days=1))
    head = ChainHead.objects.get(project=project)
    count = LedgerEntry.objects.count()
    assert len(first) == 1
    assert ledger_settlement.settle_due(project=project, now=at(days=1)) == []
    assert ledger_settlement.settle_due(project=project, now=at(days=2)) == []
    assert ledger_settlement.project_settle(project=project, period=DAY, now=at(days=3)) == []
    assert LedgerEntry.objects.count() == count and Settlement.objects.count() == 1
    assert ChainHead.objects.get(project=project).last_hash == head.last_hash


def test_rounding_is_half_up_once_at_settlement(project, examples, annotator, admin_user):
    services.pay_policy_create(
        project=project, created_by=admin_user, effective_from=at(-60), now=at(-60), piece_rate=Decimal("0.105")
    )
    work(project, annotator, start=at(0))
    (settlement,) = ledger_settlement.settle_due(project=project, now=at(days=1))
    assert (settlement.gross, settlement.payable, settlement.rounding) == (
        Decimal("0.105"),
        Decimal("0.11"),
        Decimal("0.005"),
    )
    rounding = LedgerEntry.objects.get(kind=Kind.ADJUSTMENT)
    assert rounding.amount == Decimal("0.005") and rounding.pk == settlement.rounding_entry_id
    assert net(LedgerEntry.objects.filter(period_start=DAY)) == Decimal("0.11")


def test_rounding_never_takes_pay_below_the_floor(project, examples, annotator, admin_user):
    # 12.00/h floor for 1 s worked is 0.003333: half-up would pay 0.00, so it rounds up to 0.01
    services.pay_policy_create(
        project=project, created_by=admin_user, effective_from=at(-60), now=at(-60), floor_hourly_rate=Decimal("12")
    )
    work(project, annotator, start=at(0), active_seconds=1)
    (settlement,) = ledger_settlement.settle_due(project=project, now=at(days=1))
    assert settlement.floor_target == Decimal("0.003333")
    assert settlement.top_up == Decimal("0.003333")
    assert settlement.payable == Decimal("0.01")


@pytest.mark.parametrize(
    ("total", "floor", "currency", "payable"),
    [
        ("1.005", "0", "USD", "1.01"),
        ("1.004999", "0", "USD", "1.00"),
        ("1.004999", "1.004", "USD", "1.01"),
        ("1.5", "0", "JPY", "2"),
        ("1.0005", "0", "BHD", "1.001"),
        ("0", "0", "USD", "0.00"),
    ],
)
def test_settle_rounding_rule(total, floor, currency, payable):
    result = money.settle_rounding(total=Decimal(total), floor_target=Decimal(floor), currency=currency)
    assert result == Decimal(payable) and str(result) == payable


def test_a_period_still_open_is_not_settled(project, examples, annotator, policy):
    work(project, annotator, start=at(0))
    assert ledger_settlement.settle_due(project=project, now=at(hours=11)) == []  # 23:00 the same day
    with pytest.raises(ValidationFailed, match="not ended"):
        ledger_settlement.project_settle(project=project, period=DAY, now=at(hours=11))


def test_a_correction_after_settlement_is_booked_to_the_next_open_period(
    project, examples, annotator, policy, admin_user
):
    _, annotation = work(project, annotator, start=at(0), active_seconds=600)  # 10 minutes: floor 2.00
    (settlement,) = ledger_settlement.settle_due(project=project, now=at(days=1))
    assert settlement.payable == Decimal("2.00")
    # when: rejected a day after the period closed
    annotation_services.annotation_review(
        annotation=annotation, status="rejected", actor=admin_user, now=at(days=1, hours=1)
    )
    # then: the settled day still adds up to what was paid; the reversal lands on the next day
    assert net(LedgerEntry.objects.filter(period_start=DAY)) == Decimal("2.00")
    reversal = LedgerEntry.objects.get(kind=Kind.REVERSAL, reversed_kind=Kind.PIECE_PAY)
    assert reversal.period_start == date(2030, 1, 8)
    assert selectors.ledger_verify(project=project).ok


def test_a_late_entry_dated_inside_a_settled_period_rolls_forward(project, examples, annotator, policy):
    work(project, annotator, start=at(0))
    ledger_settlement.settle_due(project=project, now=at(days=1))
    # a reading whose last heartbeat was on the settled day is closed only now
    annotation_services.instructions_heartbeat(project=project, annotator=annotator, now=at(hours=1))
    annotation_services.instruction_readings_close_stale(project=project, now=at(days=1, hours=1))
    reading = LedgerEntry.objects.get(time_category="instruction_reading")
    assert reading.occurred_at.date() == DAY and reading.period_start == date(2030, 1, 8)


def test_settle_ledger_and_verify_ledger_commands(project, examples, annotator, policy, admin_user, monkeypatch):
    work(project, annotator, start=at(0), active_seconds=60)
    monkeypatch.setattr("django.utils.timezone.now", lambda: at(days=1))
    out = StringIO()
    call_command("settle_ledger", "--project", project.slug, stdout=out)
    assert "Settled 1 annotator-period(s)" in out.getvalue()
    assert f"{project.slug} 2030-01-07 ann:" in out.getvalue()
    out = StringIO()
    call_command("settle_ledger", stdout=out)
    assert "Settled 0 annotator-period(s)" in out.getvalue()
    out = StringIO()
    call_command("verify_ledger", stdout=out)
    assert f"{project.slug}: ok" in out.getvalue()
    with pytest.raises(CommandError, match="has not ended"):
        call_command("settle_ledger", "--project", project.slug, "--period", "2030-01-08", stdout=StringIO())
    with pytest.raises(CommandError, match="No project"):
        call_command("settle_ledger", "--project", "nope", stdout=StringIO())


def test_settle_due_expires_lapsed_claims_first(project, examples, annotator, policy):
    attempt = annotation_services.claim_next(project=project, annotator=annotator, now=at(0))
    annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(0))
    annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(5))
    # The claim lapsed on day 1 but nobody claimed since: settlement closes it first. It ends
    # when the server closes it, so its time is booked to the (still open) day of settlement.
    assert ledger_settlement.settle_due(now=at(days=2)) == []
    expired = LedgerEntry.objects.get(time_category="expired")
    assert (expired.active_seconds, expired.period_start) == (Decimal("5"), date(2030, 1, 9))
    (settlement,) = ledger_settlement.settle_due(now=at(days=3))
    assert settlement.period == date(2030, 1, 9)
    assert settlement.floor_target == Decimal("0.016667") and settlement.payable == Decimal("0.02")


def test_earnings_show_a_settled_period_as_earned_plus_top_up(project, examples, annotator, policy):
    work(project, annotator, start=at(0), active_seconds=600)  # 0.10 earned, 10 minutes at 12.00/h: floor 2.00
    ledger_settlement.settle_due(project=project, now=at(days=1))
    work(project, annotator, start=at(days=1), active_seconds=30)
    earnings = selectors.earnings_for(project=project, annotator=annotator, now=at(days=1, seconds=60))
    today, yesterday = earnings.periods
    assert (today.period, today.is_current, today.is_settled) == (date(2030, 1, 8), True, False)
    assert (yesterday.earned, yesterday.floor_top_up, yesterday.total) == (Decimal("0.1"), Decimal("1.9"), Decimal("2"))
    assert yesterday.effective_hourly_rate == Decimal("12")
    assert today.projected_top_up == 0 and today.earned == Decimal("0.1")  # 0.10 for 30 s is above the floor
    assert today.examples == 1 and today.active_seconds == Decimal("30")


def test_one_failing_project_does_not_hold_back_the_others(
    project, examples, annotator, policy, admin_user, monkeypatch
):
    other = make_project(admin=admin_user, name="Other")
    add_examples(other, ["another text"])
    add_member(other, user=annotator)
    work(project, annotator, start=at(0))
    work(other, annotator, start=at(0))
    real = ledger_settlement.project_settle

    def flaky(*, project, **kwargs):
        if project.pk == other.pk:
            raise RuntimeError("disk full")
        return real(project=project, **kwargs)

    monkeypatch.setattr(ledger_settlement, "project_settle", flaky)
    with pytest.raises(ledger_settlement.SettlementFailed, match="other"):
        ledger_settlement.settle_due(now=at(days=1))
    assert Settlement.objects.filter(project=project).count() == 1
    assert not Settlement.objects.filter(project=other).exists()
