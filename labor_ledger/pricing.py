"""How time and pieces are priced under a project's pay policy. Reads only."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from annotation.models import Annotation

from . import money
from .models import DEFAULT_COUNTED_CATEGORIES, WELFARE_CATEGORIES, Clock, LedgerEntry, PayPolicy, TimeCategory

Kind = LedgerEntry.Kind
ZERO = money.ZERO


def policy_in_force(*, project_id: int, at: datetime) -> PayPolicy | None:
    return PayPolicy.objects.filter(project_id=project_id, effective_from__lte=at).order_by("-effective_from").first()


@dataclass(frozen=True)
class Priced:
    kind: str
    amount: Decimal
    counted_seconds: Decimal
    floor_amount: Decimal
    client_amount: Decimal


def _clock(clock: str, *, active: Decimal, wall: Decimal) -> Decimal:
    return wall if clock == Clock.WALL else active


def price_time(*, policy: PayPolicy | None, category: str, active: Decimal, wall: Decimal) -> Priced:
    """How a span of time in `category` is paid and counted under `policy`.

    hourly_pay when the policy's hourly rate pays the category; otherwise work_time for the
    time of an accepted label (the piece_pay entry carries its money) and unpaid_time for
    everything else. Counted (hours worked) seconds earn the floor and per-hour client prices.
    """
    if policy is None:
        counted = active if category in DEFAULT_COUNTED_CATEGORIES or category == TimeCategory.REVIEW else ZERO
        kind = Kind.WORK_TIME if category == TimeCategory.SUBMITTED else Kind.UNPAID_TIME
        return Priced(kind, ZERO, counted, ZERO, ZERO)
    if category == TimeCategory.REVIEW:
        return _price_review(policy=policy, active=active, wall=wall)
    amount = ZERO
    welfare = category in WELFARE_CATEGORIES  # paid and counted as time worked under any policy
    if policy.hourly_rate > 0 and (welfare or category in policy.hourly_categories):
        kind = Kind.HOURLY_PAY
        amount = money.hourly(policy.hourly_rate, _clock(policy.hourly_clock, active=active, wall=wall))
    elif category == TimeCategory.SUBMITTED or (category == TimeCategory.REJECTED and policy.pay_rejected_work):
        # A rejected label the policy keeps paid is still paid by the piece: work time, not unpaid.
        kind = Kind.WORK_TIME
    else:
        kind = Kind.UNPAID_TIME
    floored = welfare or category in policy.floor_categories
    counted = _clock(policy.floor_clock, active=active, wall=wall) if floored else ZERO
    floor_amount = money.hourly(policy.floor_hourly_rate, counted)
    client_amount = money.hourly(policy.client_price_per_hour, counted) if policy.client_price_per_hour else ZERO
    return Priced(kind, amount, counted, floor_amount, client_amount)


def review_rate(policy: PayPolicy) -> Decimal:
    """The hourly rate of review time: review_hourly_rate, else hourly_rate, else the floor's."""
    if policy.review_hourly_rate is not None:
        return policy.review_hourly_rate
    return policy.hourly_rate if policy.hourly_rate > 0 else policy.floor_hourly_rate


def _price_review(*, policy: PayPolicy, active: Decimal, wall: Decimal) -> Priced:
    """Review is paid by the hour (on the hourly clock) and always counts as hours worked."""
    rate = review_rate(policy)
    amount = money.hourly(rate, _clock(policy.hourly_clock, active=active, wall=wall)) if rate > 0 else ZERO
    counted = _clock(policy.floor_clock, active=active, wall=wall)
    floor_amount = money.hourly(policy.floor_hourly_rate, counted)
    client_amount = money.hourly(policy.client_price_per_hour, counted) if policy.client_price_per_hour else ZERO
    return Priced(Kind.HOURLY_PAY if rate > 0 else Kind.UNPAID_TIME, amount, counted, floor_amount, client_amount)


def is_overlap(annotation: Annotation) -> bool:
    """An overlap item: another annotator's label on the same example was accepted before this one."""
    return (
        Annotation.objects.filter(
            example_id=annotation.example_id, status=Annotation.Status.ACCEPTED, source=Annotation.Source.HUMAN
        )
        .exclude(annotator_id=annotation.annotator_id)
        .filter(created_at__lte=annotation.created_at, pk__lt=annotation.pk)
        .exists()
    )
