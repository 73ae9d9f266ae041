"""Reads of the ledger, each scoped to what the requesting user may see.

Who sees what: an annotator sees their own entries only; a project's admins and auditors
see the whole project ledger. Nobody edits an entry (there is no write path for one).

`labor_totals` is the one aggregation every report builds on: any grouping of entries
(by annotator, period, attempt, annotation, ...) with time, examples and the wage bill by pay
line, in one SQL query.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Case, CharField, Count, DecimalField, F, IntegerField, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Attempt, InstructionReading, Project
from annotation.selectors import role_in_project
from core.roles import READERS

from . import money, periods, verification
from .models import (
    Balance,
    LedgerEntry,
    LedgerVerification,
    PayPolicy,
    Settlement,
    TimeCategory,
    TimeDispute,
)

Kind = LedgerEntry.Kind
MONEY = DecimalField(max_digits=18, decimal_places=6)
SECONDS = DecimalField(max_digits=14, decimal_places=3)


def can_read_project_ledger(*, user, project: Project) -> bool:
    return role_in_project(user=user, project=project) in READERS


def entries_visible_to(*, user, project: Project) -> QuerySet[LedgerEntry]:
    qs = LedgerEntry.objects.filter(project=project)
    if can_read_project_ledger(user=user, project=project):
        return qs
    return qs.filter(annotator=user)


def settlements_visible_to(*, user, project: Project) -> QuerySet[Settlement]:
    qs = Settlement.objects.filter(project=project)
    if can_read_project_ledger(user=user, project=project):
        return qs
    return qs.filter(annotator=user)


def balances_visible_to(*, user, project: Project) -> QuerySet[Balance]:
    qs = Balance.objects.filter(project=project)
    if can_read_project_ledger(user=user, project=project):
        return qs
    return qs.filter(annotator=user)


def pay_policies(*, project: Project) -> QuerySet[PayPolicy]:
    return PayPolicy.objects.filter(project=project).order_by("version")


def policy_current(*, project: Project, now: datetime | None = None) -> PayPolicy | None:
    now = now or timezone.now()
    return pay_policies(project=project).filter(effective_from__lte=now).order_by("-effective_from").first()


# --- aggregation -----------------------------------------------------------------------


def _sum(name: str, output=MONEY, **q) -> Coalesce:
    return Coalesce(Sum(name, filter=Q(**q) if q else None), Value(Decimal(0)), output_field=output)


def _line(kind: str, name: str = "amount", output=MONEY) -> Coalesce:
    """The sum of a pay line: entries of `kind` and the reversals of such entries."""
    return Coalesce(Sum(name, filter=Q(kind=kind) | Q(reversed_kind=kind)), Value(Decimal(0)), output_field=output)


TOTALS = {
    "active": lambda: _sum("active_seconds", SECONDS),
    "wall": lambda: _sum("wall_seconds", SECONDS),
    "counted": lambda: _sum("counted_seconds", SECONDS),
    "unpaid_active": lambda: _line(Kind.UNPAID_TIME, "active_seconds", SECONDS),
    "examples": lambda: Coalesce(Sum("units"), Value(0), output_field=IntegerField()),
    "pay": lambda: _sum("amount"),
    "piece_pay": lambda: _line(Kind.PIECE_PAY),
    "hourly_pay": lambda: _line(Kind.HOURLY_PAY),
    "floor_top_up": lambda: _line(Kind.FLOOR_TOP_UP),
    "bonus": lambda: _line(Kind.BONUS),
    "adjustment": lambda: _line(Kind.ADJUSTMENT),
    "floor": lambda: _sum("floor_amount"),
    "client": lambda: _sum("client_amount"),
    "entries": lambda: Count("id"),
}


def labor_totals(*, entries: QuerySet[LedgerEntry], by: Sequence[str]) -> QuerySet:
    """Time, examples and the wage bill per group, in one query. `by` names entry columns
    (e.g. ["annotator_id", "period_start"], ["time_category"], ["annotation_id"]).

    Each row has the group's columns and: active, wall, counted (hours-worked) and
    unpaid_active seconds; examples (net accepted); pay (everything), and pay by line:
    piece_pay, hourly_pay, floor_top_up, bonus, adjustment (reversals count under the line of
    what they reverse); floor (the floor earned); client (the client's price); entries."""
    return entries.order_by().values(*by).annotate(**{name: make() for name, make in TOTALS.items()}).order_by(*by)


# --- the annotator's earnings -------------------------------------------------------------


@dataclass
class PeriodEarnings:
    period: date
    active_seconds: Decimal = Decimal(0)
    wall_seconds: Decimal = Decimal(0)
    counted_seconds: Decimal = Decimal(0)
    examples: int = 0
    pay: Decimal = Decimal(0)
    piece_pay: Decimal = Decimal(0)
    hourly_pay: Decimal = Decimal(0)
    floor_top_up: Decimal = Decimal(0)
    bonus: Decimal = Decimal(0)
    adjustment: Decimal = Decimal(0)
    floor_amount: Decimal = Decimal(0)
    entries: int = 0
    settlement: Settlement | None = None
    is_current: bool = False

    @property
    def is_settled(self) -> bool:
        return self.settlement is not None

    @property
    def earned(self) -> Decimal:
        """Pay for the period's work before any top-up and settlement rounding."""
        return self.settlement.gross if self.settlement else self.pay

    @property
    def projected_top_up(self) -> Decimal:
        """The settled top-up, or for a period not settled yet ("projected, period open"): what
        settlement would top up if it closed now. Computed by reading, never written."""
        if self.is_settled:
            return self.floor_top_up
        return money.floor_top_up(gross=self.pay, floor=self.floor_amount)

    @property
    def total(self) -> Decimal:
        return self.settlement.payable if self.settlement else self.pay + self.projected_top_up

    @property
    def active_hours(self) -> Decimal:
        return self.active_seconds / money.SECONDS_PER_HOUR

    @property
    def wall_hours(self) -> Decimal:
        return self.wall_seconds / money.SECONDS_PER_HOUR

    @property
    def hours_worked(self) -> Decimal:
        return self.counted_seconds / money.SECONDS_PER_HOUR

    @property
    def effective_hourly_rate(self) -> Decimal | None:
        """Pay (with the top-up) per hour worked."""
        if self.counted_seconds <= 0:
            return None
        return self.total * money.SECONDS_PER_HOUR / self.counted_seconds


@dataclass
class Earnings:
    project: Project
    annotator: object
    current: PeriodEarnings
    periods: list[PeriodEarnings]
    time_by_category: list[dict] = field(default_factory=list)
    policy: PayPolicy | None = None
    balance: Decimal = Decimal(0)
    # Pay not tied to a time category (settled top-ups, bonuses, adjustments, and the top-ups
    # projected for periods not settled yet): with time_by_category it adds up to `total`.
    other_lines: list[dict] = field(default_factory=list)

    @property
    def projected_top_up(self) -> Decimal:
        """Top-ups projected for every period not settled yet (read, never written)."""
        return sum((p.projected_top_up for p in self.periods if not p.is_settled), Decimal(0))

    @property
    def total(self) -> Decimal:
        """Everything earned in the project: each period's total (settled payable, or pay so far
        with its projected top-up)."""
        return sum((p.total for p in self.periods), Decimal(0))

    @property
    def category_totals(self) -> dict:
        rows = self.time_by_category
        return {
            "active": sum((r["active"] for r in rows), Decimal(0)),
            "wall": sum((r["wall"] for r in rows), Decimal(0)),
            "paid": sum((r["paid"] for r in rows), Decimal(0)),
        }


def earnings_for(*, project: Project, annotator, now: datetime | None = None) -> Earnings:
    """One annotator's earnings in one project: the current period and every period with
    entries (newest first), time by category, the policy in force. The caller checks the
    requester is `annotator` (or reads the project ledger)."""
    now = now or timezone.now()
    current_period = periods.period_of(now)
    own = LedgerEntry.objects.filter(project=project, annotator=annotator)
    settlements = {s.period: s for s in Settlement.objects.filter(project=project, annotator=annotator)}
    rows = {}
    for row in labor_totals(entries=own, by=["period_start"]):
        rows[row["period_start"]] = PeriodEarnings(
            period=row["period_start"],
            active_seconds=row["active"],
            wall_seconds=row["wall"],
            counted_seconds=row["counted"],
            examples=row["examples"],
            pay=row["pay"],
            piece_pay=row["piece_pay"],
            hourly_pay=row["hourly_pay"],
            floor_top_up=row["floor_top_up"],
            bonus=row["bonus"],
            adjustment=row["adjustment"],
            floor_amount=row["floor"],
            entries=row["entries"],
        )  # the client's price is left out: it is for admins and auditors
    current = rows.get(current_period) or PeriodEarnings(period=current_period)
    current.is_current = True
    rows[current_period] = current
    for period, row in rows.items():
        row.settlement = settlements.get(period)
    by_category, other_lines = _pay_by_category(own)
    balance = Balance.objects.filter(project=project, annotator=annotator).values_list("amount", flat=True).first()
    earnings = Earnings(
        project=project,
        annotator=annotator,
        current=current,
        periods=sorted(rows.values(), key=lambda r: r.period, reverse=True),
        time_by_category=by_category,
        policy=policy_current(project=project, now=now),
        balance=balance or Decimal(0),
        other_lines=other_lines,
    )
    projected = earnings.projected_top_up
    if projected:
        earnings.other_lines.append(
            {"line": "projected_top_up", "label": "Floor top-up (projected, period open)", "paid": projected}
        )
    return earnings


# Piece pay (and its reversals) has no time category of its own: it is pay for the time of a
# submitted attempt, and counts under "submitted".
_CATEGORY_OF_PAY = Case(
    When(Q(time_category="") & (Q(kind=Kind.PIECE_PAY) | Q(reversed_kind=Kind.PIECE_PAY)), then=Value("submitted")),
    default=F("time_category"),
    output_field=CharField(),
)
_OTHER_LINE_LABELS = {
    Kind.FLOOR_TOP_UP: "Floor top-up (settled)",
    Kind.BONUS: "Bonuses",
    Kind.ADJUSTMENT: "Adjustments (settlement rounding included)",
}


def _pay_by_category(entries: QuerySet[LedgerEntry]) -> tuple[list[dict], list[dict]]:
    """Time and pay per time category (piece pay under "submitted"), and the pay lines booked
    per period rather than per task; together they add up to every entry."""
    rows = list(
        entries.annotate(category=_CATEGORY_OF_PAY)
        .order_by()
        .values("category")
        .annotate(active=_sum("active_seconds", SECONDS), wall=_sum("wall_seconds", SECONDS), paid=_sum("amount"))
        .order_by("category")
    )
    labels = dict(TimeCategory.choices)
    by_category = []
    other = defaultdict(lambda: Decimal(0))
    for row in rows:
        if row["category"]:
            by_category.append({**row, "time_category": row["category"], "label": labels.get(row["category"])})
    for kind, paid in (
        entries.filter(time_category="")
        .exclude(Q(kind=Kind.PIECE_PAY) | Q(reversed_kind=Kind.PIECE_PAY))
        .annotate(line=Case(When(kind=Kind.REVERSAL, then=F("reversed_kind")), default=F("kind")))
        .order_by()
        .values_list("line")
        .annotate(paid=_sum("amount"))
    ):
        other[kind] += paid
    other_lines = [
        {"line": kind, "label": _OTHER_LINE_LABELS.get(kind, dict(Kind.choices).get(kind, kind)), "paid": paid}
        for kind, paid in sorted(other.items())
    ]
    return by_category, other_lines


def entries_of_period(*, project: Project, annotator, period: date) -> QuerySet[LedgerEntry]:
    return (
        LedgerEntry.objects.filter(project=project, annotator=annotator, period_start=period)
        .select_related("policy", "acting_user")
        .order_by("-seq")
    )


# --- verification --------------------------------------------------------------------------


# The verification itself lives in verification.py (fast, and held to the signed checkpoints).
Verification = verification.Verification
MAX_PROBLEMS = verification.MAX_PROBLEMS


def ledger_verify(*, project: Project) -> Verification:
    """Recompute the project's hash and MAC chains from every entry, hold them to the latest
    signed checkpoint, and check balances, settlements and reversals; report every
    disagreement, the first bad entry first. Streams the entries: memory does not grow with
    the ledger."""
    return verification.verify_project(project=project)


def last_verification(*, project: Project) -> LedgerVerification | None:
    """The latest recorded verification of the project's ledger (services.ledger_verification_record)."""
    return LedgerVerification.objects.filter(project=project).order_by("-created_at", "-id").first()


# --- time disputes and the labeling page's own figures ------------------------------------------


def disputes_visible_to(*, user, project: Project, status: str | None = None) -> QuerySet[TimeDispute]:
    """Time disputes: an annotator sees their own, admins and auditors the project's. `status`
    is "open" (no decision yet), "accepted" or "rejected"; open ones first, oldest first."""
    qs = TimeDispute.objects.filter(project=project)
    if not can_read_project_ledger(user=user, project=project):
        qs = qs.filter(annotator=user)
    if status == "open":
        qs = qs.filter(decision__isnull=True)
    elif status:
        qs = qs.filter(decision__outcome=status)
    return qs.select_related("annotator", "decision", "decision__decided_by", "decision__entry").order_by(
        F("decision").asc(nulls_first=True), "created_at", "pk"
    )


def dispute_status(dispute: TimeDispute) -> str:
    decision = getattr(dispute, "decision", None)
    return decision.outcome if decision is not None else "open"


def open_disputes_count(*, project: Project, until_day: date | None = None) -> int:
    """Disputes not decided yet; with `until_day`, only those about work on or before it."""
    qs = TimeDispute.objects.filter(project=project, decision__isnull=True)
    if until_day is not None:
        qs = qs.filter(day__lte=until_day)
    return qs.count()


def disputable_attempts(*, project: Project, annotator, period: date, limit: int = 200) -> list[Attempt]:
    """The annotator's own closed attempts booked to `period`, newest first: what the earnings
    page offers to contest."""
    ids = (
        LedgerEntry.objects.filter(project=project, annotator=annotator, period_start=period, attempt__isnull=False)
        .exclude(time_category="")
        .values("attempt_id")
    )
    return list(
        Attempt.objects.filter(pk__in=ids, annotator=annotator)
        .exclude(status=Attempt.Status.CLAIMED)
        .order_by("-finished_at", "-pk")[:limit]
    )


@dataclass
class Today:
    """The labeling page's running tally: the annotator's own figures for the current period."""

    period: date
    currency: str
    active_seconds: Decimal
    open_seconds: Decimal
    examples: int
    earned: Decimal

    @property
    def seconds(self) -> Decimal:
        return self.active_seconds + self.open_seconds


def today_for(*, project: Project, annotator, now: datetime | None = None) -> Today:
    """Booked active time, texts and pay of the current period, plus the active time already
    credited on the annotator's open claims and readings here (booked when they close)."""
    now = now or timezone.now()
    period = periods.period_of(now)
    own = LedgerEntry.objects.filter(project=project, annotator=annotator, period_start=period)
    totals = own.aggregate(active=TOTALS["active"](), examples=TOTALS["examples"](), pay=TOTALS["pay"]())
    settled = Settlement.objects.filter(project=project, annotator=annotator, period=period).first()
    open_attempts = Attempt.objects.filter(
        project=project, annotator=annotator, status=Attempt.Status.CLAIMED
    ).aggregate(s=_sum("active_seconds", SECONDS))["s"]
    open_readings = InstructionReading.objects.filter(
        project=project, annotator=annotator, ended_at__isnull=True
    ).aggregate(s=_sum("active_seconds", SECONDS))["s"]
    return Today(
        period=period,
        currency=project.currency,
        active_seconds=totals["active"],
        open_seconds=open_attempts + open_readings,
        examples=totals["examples"],
        earned=settled.gross if settled else totals["pay"],  # before any top-up, as on the earnings page
    )
