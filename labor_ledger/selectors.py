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

from . import chain, money, periods
from .models import (
    Balance,
    ChainHead,
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


@dataclass
class Verification:
    project: Project
    entries: int = 0
    head_seq: int = 0
    head_hash: str = chain.GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


MAX_PROBLEMS = 200


_VERIFIED_FIELDS = (*chain.HASHED_ATTRIBUTES, "entry_hash", "hash_version", "mac", "mac_key_id")


def ledger_verify(*, project: Project) -> Verification:
    """Recompute the project's hash chain, balances and settlements from its entries and
    report every disagreement. Streams the entries: memory does not grow with the ledger."""
    result = Verification(project=project)
    problems = result.problems

    def problem(text: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(text)
        elif len(problems) == MAX_PROBLEMS:
            problems.append("... more problems not listed")

    prev_hash, expected_seq = chain.GENESIS, 1
    # The keyed MAC chain (chain.py): unkeyed (v1) entries only up to the head's sealed legacy prefix.
    head = ChainHead.objects.filter(project=project).first()
    prev_link, legacy_seq = chain.GENESIS, head.legacy_seq if head is not None else 0
    balances: dict[int, Decimal] = defaultdict(Decimal)
    counts: dict[int, int] = defaultdict(int)
    by_period: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
    # Rows as named tuples, not model instances: the hash needs only the values, and building
    # millions of instances was most of the time (chain.canonical reads attributes either way).
    rows = (
        LedgerEntry.objects.filter(project=project)
        .order_by("seq")
        .values_list(*_VERIFIED_FIELDS, named=True)
        .iterator(chunk_size=5000)
    )
    for entry in rows:
        if entry.seq != expected_seq:
            problem(f"entry #{entry.seq}: expected #{expected_seq} next (a gap or a fork in the chain)")
        if entry.prev_hash != prev_hash:
            problem(f"entry #{entry.seq}: prev_hash does not match the hash of the entry before it")
        if chain.entry_hash(entry) != entry.entry_hash:
            problem(f"entry #{entry.seq}: its contents do not match its hash (changed after it was written)")
        if entry.hash_version == chain.HASH_V2:
            try:
                if not chain.mac_ok(entry, prev_link=prev_link):
                    problem(
                        f"entry #{entry.seq}: its MAC does not verify "
                        "(written or changed by someone without the ledger key)"
                    )
            except chain.UnknownKey as exc:
                problem(f"entry #{entry.seq}: {exc}")
        elif entry.hash_version == chain.HASH_V1:
            if entry.seq > legacy_seq:
                problem(
                    f"entry #{entry.seq}: an unkeyed entry after the ledger key was introduced "
                    "(appended by someone without the key)"
                )
        else:
            problem(f"entry #{entry.seq}: unknown hash version {entry.hash_version}")
        if entry.seq == legacy_seq and not chain.legacy_seal_ok(
            head.legacy_seal, project.pk, entry.seq, entry.entry_hash
        ):
            problem(f"entry #{entry.seq}: the unkeyed entries up to here do not match the chain head's seal")
        if entry.currency != project.currency:
            problem(f"entry #{entry.seq}: currency {entry.currency} differs from the project's {project.currency}")
        prev_hash, expected_seq = entry.entry_hash, entry.seq + 1
        prev_link = chain.link(entry)
        balances[entry.annotator_id] += entry.amount
        counts[entry.annotator_id] += 1
        by_period[(entry.annotator_id, entry.period_start)] += entry.amount
        result.entries += 1
    result.head_seq, result.head_hash = expected_seq - 1, prev_hash

    if legacy_seq > result.head_seq:
        problem(f"the chain head's seal covers #{legacy_seq}, but the entries end at #{result.head_seq}")
    if head is not None and (head.seq, head.last_hash) != (result.head_seq, result.head_hash):
        problem(
            f"chain head says #{head.seq} {head.last_hash[:12]}, the entries end at #{result.head_seq} {prev_hash[:12]}"
        )
    if head is None and result.entries:
        problem("the project has entries but no chain head")

    stored = {b.annotator_id: b for b in Balance.objects.filter(project=project)}
    for annotator_id in set(stored) | set(balances):
        b = stored.get(annotator_id)
        if b is None:
            problem(f"annotator {annotator_id}: entries sum to {balances[annotator_id]} but there is no balance row")
        elif b.amount != balances[annotator_id] or b.entry_count != counts[annotator_id]:
            problem(
                f"annotator {annotator_id}: balance {b.amount} over {b.entry_count} entries, "
                f"the entries sum to {balances[annotator_id]} over {counts[annotator_id]}"
            )

    for s in Settlement.objects.filter(project=project).order_by("period", "annotator_id"):
        booked = by_period.get((s.annotator_id, s.period), Decimal(0))
        if booked != s.payable:
            problem(
                f"settlement {s.period} of annotator {s.annotator_id}: payable {s.payable}, entries sum to {booked}"
            )
        if s.gross + s.top_up + s.rounding != s.payable:
            problem(f"settlement {s.period} of annotator {s.annotator_id}: gross + top-up + rounding != payable")
        if s.payable < s.floor_target:
            problem(
                f"settlement {s.period} of annotator {s.annotator_id}: "
                f"payable {s.payable} below the floor {s.floor_target}"
            )

    reversals = LedgerEntry.objects.filter(project=project, kind=Kind.REVERSAL)
    for seq in reversals.filter(reverses__isnull=True).values_list("seq", flat=True)[:MAX_PROBLEMS]:
        problem(f"entry #{seq}: a reversal that reverses nothing")
    mismatched = reversals.filter(reverses__isnull=False).exclude(
        Q(amount=-F("reverses__amount"))
        & Q(units=-F("reverses__units"))
        & Q(active_seconds=-F("reverses__active_seconds"))
        & Q(wall_seconds=-F("reverses__wall_seconds"))
        & Q(counted_seconds=-F("reverses__counted_seconds"))
        & Q(floor_amount=-F("reverses__floor_amount"))
        & Q(annotator=F("reverses__annotator"))
        & Q(project=F("reverses__project"))
        & Q(reversed_kind=F("reverses__kind"))
    )
    for seq in mismatched.values_list("seq", flat=True)[:MAX_PROBLEMS]:
        problem(f"entry #{seq}: a reversal that does not mirror the entry it reverses")
    return result


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
