"""Settlement: closing an annotator's period, with the floor top-up and rounding it is owed.

Idempotent: a period already settled for an annotator is left as it is, so the hourly beat
task, the settle_ledger command and a retry can overlap and still write each settlement once.
"""

import logging
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Exists, OuterRef, Sum
from django.utils import timezone

from annotation import review as annotation_review
from annotation import services as annotation_services
from annotation.models import Project
from core.errors import ValidationFailed

from . import checkpoints, money, periods
from .books import Books, open_books
from .models import LedgerEntry, PayPolicy, Settlement
from .pricing import policy_in_force

logger = logging.getLogger(__name__)
Kind = LedgerEntry.Kind
ZERO = money.ZERO


SETTLEMENT_TOTALS = {
    "gross": Sum("amount"),
    "floor": Sum("floor_amount"),
    "active": Sum("active_seconds"),
    "wall": Sum("wall_seconds"),
    "counted": Sum("counted_seconds"),
    "examples": Sum("units"),
    "client": Sum("client_amount"),
}


def _settle_one(*, books: Books, annotator_id: int, period: date, totals: dict, policy, actor, now: datetime):
    """The settlement of one annotator's period (not yet saved) and its top-up and rounding entries."""
    project = books.project
    gross = totals["gross"] or ZERO
    floor_target = max(totals["floor"] or ZERO, ZERO)
    counted = totals["counted"] or ZERO
    top_up = money.floor_top_up(gross=gross, floor=totals["floor"] or ZERO)
    total = gross + top_up
    payable = money.settle_rounding(total=total, floor_target=floor_target, currency=project.currency)
    rounding = payable - total
    key = f"settlement:{project.pk}:{annotator_id}:{period.isoformat()}"
    actor_id = actor.pk if actor else None
    hours = (counted / money.SECONDS_PER_HOUR).quantize(Decimal("0.001"))
    top_up_entry = rounding_entry = None
    if top_up > 0:
        top_up_entry = books.add(
            annotator_id=annotator_id,
            kind=Kind.FLOOR_TOP_UP,
            idempotency_key=f"{key}:top_up",
            occurred_at=now,
            period=period,
            policy=policy,
            amount=top_up,
            acting_user_id=actor_id,
            reason=f"floor top-up for {period}: floor {floor_target:.6f} for {hours} h worked, pay was {gross:.6f}",
        )
    if rounding != 0:
        rounding_entry = books.add(
            annotator_id=annotator_id,
            kind=Kind.ADJUSTMENT,
            idempotency_key=f"{key}:rounding",
            occurred_at=now,
            period=period,
            policy=policy,
            amount=rounding,
            acting_user_id=actor_id,
            reason=f"settlement rounding of {period} to the {project.currency} minor unit",
        )
    return Settlement(
        project=project,
        annotator_id=annotator_id,
        period=period,
        currency=project.currency,
        gross=money.entry_amount(gross),
        floor_target=money.entry_amount(floor_target),
        top_up=money.entry_amount(top_up),
        rounding=money.entry_amount(rounding),
        payable=payable,
        active_seconds=totals["active"] or ZERO,
        wall_seconds=totals["wall"] or ZERO,
        counted_seconds=counted,
        examples=totals["examples"] or 0,
        client_amount=totals["client"] or ZERO,
        top_up_entry=top_up_entry,
        rounding_entry=rounding_entry,
        settled_by=actor,
        created_at=now,
    )


@transaction.atomic
def project_settle(
    *, project: Project, now: datetime | None = None, period: date | None = None, actor=None
) -> list[Settlement]:
    """Close every complete, unsettled period of the project (or just `period`), per annotator:
    compute each one's floor top-up and rounding and write them as entries. Idempotent: a
    period already settled for an annotator is left as it is."""
    now = now or timezone.now()
    current = periods.period_of(now)
    if period is not None and period >= current:
        raise ValidationFailed(
            f"The period {period} has not ended yet; it can be settled from {periods.period_end(period).isoformat()}."
        )
    with open_books(project) as books:  # no append, no other settlement, while we count
        settled = Settlement.objects.filter(
            project=project, annotator=OuterRef("annotator"), period=OuterRef("period_start")
        )
        due = LedgerEntry.objects.filter(project=project, period_start__lt=current).exclude(Exists(settled))
        if period is not None:
            due = due.filter(period_start=period)
        rows = due.order_by().values("period_start", "annotator_id").annotate(**SETTLEMENT_TOTALS)
        policies: dict[date, PayPolicy | None] = {}
        settlements = []
        for row in sorted(rows, key=lambda r: (r["period_start"], r["annotator_id"])):
            p = row["period_start"]
            if p not in policies:  # the policy in force when the period ended
                end = min(periods.period_end(p), now) - timedelta(microseconds=1)
                policies[p] = policy_in_force(project_id=project.pk, at=end)
            settlements.append(
                _settle_one(
                    books=books,
                    annotator_id=row["annotator_id"],
                    period=p,
                    totals=row,
                    policy=policies[p],
                    actor=actor,
                    now=now,
                )
            )
        books.flush()  # the entries get their ids before the settlements name them
        Settlement.objects.bulk_create(settlements)
    return settlements


def settle_due(*, project: Project | None = None, now: datetime | None = None, actor=None) -> list[Settlement]:
    """Close what is due in one project or all: first record the time that is still open
    (claims past their lease, readings gone quiet), then settle each project in its own transaction."""
    now = now or timezone.now()
    annotation_services.attempts_expire(project=project, now=now)
    annotation_services.instruction_readings_close_stale(project=project, now=now)
    annotation_review.review_sessions_close_stale(project=project, now=now)
    projects = (
        [project]
        if project is not None
        else list(Project.objects.filter(pk__in=LedgerEntry.objects.values("project_id").distinct()).order_by("pk"))
    )
    settlements: list[Settlement] = []
    failed = []
    for p in projects:
        try:
            settled = project_settle(project=p, now=now, actor=actor)
            settlements += settled
            if settled:  # the settled head, signed (checkpoints.py), once its transaction committed
                checkpoints.checkpoint(project=p, reason=checkpoints.Reason.SETTLEMENT)
        except Exception:  # one project's trouble must not hold back everyone else's pay
            logger.exception("labor ledger: settling project %s failed", p.slug)
            failed.append(p.slug)
    if failed:
        raise SettlementFailed(f"Settling failed for: {', '.join(failed)} (the others were settled; see the log).")
    return settlements


class SettlementFailed(RuntimeError):
    """Some projects could not be settled; the rest were."""
