"""Writes for the labor ledger. Nothing else writes ledger rows.

annotation.services calls the two entry points, `attempt_finished` and
`annotation_status_changed`, inside the transaction that records the work, so the work and
its entries commit together or not at all.

Every append goes through `_Books`, which holds the project's chain head row locked
(SELECT ... FOR UPDATE) until the transaction ends: appends to one project are serialized,
each entry names the hash of the one before it, and the entries, the head and the balances
are written in bulk at the end of the service call. Every entry has a unique idempotency key
derived from what caused it, so no cause can be written twice.

Attempt entries are kept in step with the state of the work rather than replayed from
events (`_reconcile_attempt`): an attempt has exactly one live time entry whose category
says what became of it, and an accepted human annotation exactly one live piece_pay entry.
A call that finds the ledger already in step writes nothing, so retries and duplicate hooks
can never pay twice. Lock order is always: the work's own rows first, the chain head last.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from annotation.models import Annotation, Attempt, Project
from core.errors import Conflict, NotFound, ValidationFailed

from . import chain, money, periods
from .models import (
    DEFAULT_COUNTED_CATEGORIES,
    Balance,
    ChainHead,
    Clock,
    InstructionReading,
    LedgerEntry,
    PayPolicy,
    Settlement,
    TimeCategory,
)

logger = logging.getLogger(__name__)
Kind = LedgerEntry.Kind
ZERO = money.ZERO
TIME_KINDS = {Kind.HOURLY_PAY, Kind.WORK_TIME, Kind.UNPAID_TIME}
MANUAL_KINDS = {Kind.BONUS, Kind.ADJUSTMENT}


# --- who is acting ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Acting:
    user_id: int | None
    reason: str


_acting: ContextVar[_Acting | None] = ContextVar("labor_ledger_acting", default=None)


@contextmanager
def acting_as(user, reason: str = "") -> Iterator[None]:
    """Name the user (and reason) behind ledger entries written inside the block, for hooks
    whose signature cannot carry them (an admin rejecting a label through annotation.services)."""
    token = _acting.set(_Acting(user_id=getattr(user, "pk", None), reason=reason))
    try:
        yield
    finally:
        _acting.reset(token)


# --- policies ---------------------------------------------------------------------------


def policy_in_force(*, project_id: int, at: datetime) -> PayPolicy | None:
    return PayPolicy.objects.filter(project_id=project_id, effective_from__lte=at).order_by("-effective_from").first()


POLICY_TERMS = {
    "piece_rate",
    "gold_piece_rate",
    "overlap_piece_rate",
    "hourly_rate",
    "hourly_clock",
    "hourly_categories",
    "floor_hourly_rate",
    "floor_clock",
    "floor_categories",
    "client_price_per_example",
    "client_price_per_hour",
    "note",
}


@transaction.atomic
def pay_policy_create(
    *,
    project: Project,
    created_by,
    effective_from: datetime | None = None,
    currency: str | None = None,
    now: datetime | None = None,
    **terms,
) -> PayPolicy:
    """A new version of the project's pay policy, in force from `effective_from` (default now).

    A policy cannot start in the past (work already priced stays priced) and must start after
    the latest version. Unnamed terms default to: nothing per piece or hour, no floor, the
    default counted categories, active clocks.
    """
    now = now or timezone.now()
    unknown = set(terms) - POLICY_TERMS
    if unknown:
        raise ValidationFailed(f"Unknown pay policy terms: {', '.join(sorted(unknown))}.")
    project = Project.objects.select_for_update().get(pk=project.pk)
    if currency and currency.upper() != project.currency:
        raise ValidationFailed(f"This project pays in {project.currency}; a policy cannot use {currency.upper()}.")
    effective_from = effective_from or now
    if effective_from < now:
        raise ValidationFailed("A pay policy cannot start in the past: work already priced stays priced.")
    latest = PayPolicy.objects.filter(project=project).order_by("-version").first()
    if latest is not None and effective_from <= latest.effective_from:
        raise ValidationFailed(
            f"Version {latest.version} starts {latest.effective_from.isoformat()}; a new version must start later."
        )
    terms = {k: v for k, v in terms.items() if v is not None}
    for key in ("hourly_categories", "floor_categories"):
        if key in terms:
            terms[key] = list(dict.fromkeys(terms[key]))
    policy = PayPolicy(
        project=project,
        version=(latest.version + 1) if latest else 1,
        effective_from=effective_from,
        currency=project.currency,
        created_by=created_by,
        created_at=now,
        **terms,
    )
    try:
        policy.full_clean()
    except Exception as exc:  # django ValidationError: say what is wrong in the domain's terms
        raise ValidationFailed(_messages(exc)) from exc
    policy.save()
    return policy


def _messages(exc) -> str:
    if hasattr(exc, "message_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(getattr(exc, "messages", [str(exc)]))


# --- the append ---------------------------------------------------------------------------


def _lock_chain(project_id: int) -> ChainHead:
    """Lock the project's chain head for this transaction.

    First a KEY SHARE lock on the project row: annotation's writes hold that row FOR UPDATE
    (their attempt lock selects it too) before they reach the ledger, and every entry's
    deferred foreign-key check takes KEY SHARE on it at commit. Taking it up front gives every
    writer the same lock order (project row, then chain head), so a writer that holds the chain
    head can never wait on a submission that waits for the chain head.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {Project._meta.db_table} WHERE id = %s FOR KEY SHARE", [project_id])  # noqa: S608
    head = ChainHead.objects.select_for_update().filter(project_id=project_id).first()
    if head is None:
        ChainHead.objects.bulk_create([ChainHead(project_id=project_id)], ignore_conflicts=True)
        head = ChainHead.objects.select_for_update().get(project_id=project_id)
    return head


NOT_VALIDATED = ["project", "annotator", "attempt", "annotation", "reading", "reverses", "policy", "acting_user"]


class _Books:
    """One transaction's appends to one project's chain.

    Holds the chain head locked from construction to the end of the transaction, hands each
    new entry the next seq and the hash of the one before, and writes the entries, the head
    and the balances in bulk on flush(). Use through `_open_books`, which flushes on exit.
    """

    def __init__(self, project: Project):
        self.project = project
        self.head = _lock_chain(project.pk)
        self.pending: list[LedgerEntry] = []
        self._last_settled: dict[int, date | None] = {}
        self._balances: dict[int, dict] = {}
        self._accounts: dict[int, Balance | None] = {}

    def period_for(self, annotator_id: int, at: datetime) -> date:
        """The period an entry is booked to: that of `at`, unless it is already settled for this
        annotator, then the first period after their last settled one. A settled period never changes."""
        if annotator_id not in self._last_settled:
            self._last_settled[annotator_id] = (
                Settlement.objects.filter(project_id=self.project.pk, annotator_id=annotator_id)
                .order_by("-period")
                .values_list("period", flat=True)
                .first()
            )
        period, last = periods.period_of(at), self._last_settled[annotator_id]
        if last is not None and period <= last:
            period = periods.next_period(last)
        return period

    def account(self, annotator_id: int) -> Balance | None:
        if annotator_id not in self._accounts:
            self._accounts[annotator_id] = Balance.objects.filter(
                project_id=self.project.pk, annotator_id=annotator_id
            ).first()
        return self._accounts[annotator_id]

    def add(
        self, *, annotator_id: int, kind: str, idempotency_key: str, occurred_at: datetime, period=None, **fields
    ) -> LedgerEntry:
        """Put one entry at the tip of the chain (written on flush)."""
        head = self.head
        entry = LedgerEntry(
            project_id=self.project.pk,
            seq=head.seq + 1,
            annotator_id=annotator_id,
            kind=kind,
            currency=self.project.currency,
            occurred_at=occurred_at,
            period_start=period or self.period_for(annotator_id, occurred_at),
            idempotency_key=idempotency_key,
            prev_hash=head.last_hash,
            created_at=timezone.now(),
            **fields,
        )
        for name in ("amount", "floor_amount", "client_amount"):
            setattr(entry, name, money.entry_amount(getattr(entry, name)))
        for name in ("active_seconds", "wall_seconds", "counted_seconds"):
            setattr(entry, name, money.seconds(getattr(entry, name)))
        entry.entry_hash = chain.entry_hash(entry)
        entry.full_clean(exclude=NOT_VALIDATED, validate_unique=False, validate_constraints=False)
        head.seq, head.last_hash = entry.seq, entry.entry_hash
        self.pending.append(entry)
        delta = self._balances.setdefault(annotator_id, {"amount": ZERO, "count": 0, "seq": 0, "task_end": None})
        delta["amount"] += entry.amount
        delta["count"] += 1
        delta["seq"] = entry.seq
        return entry

    def reverse(self, entry: LedgerEntry, *, occurred_at: datetime, acting_user_id, reason: str) -> LedgerEntry:
        """A new entry that negates `entry` in every signed quantity. An entry is reversed at most
        once (its key, and the one-to-one `reverses`, are unique)."""
        return self.add(
            annotator_id=entry.annotator_id,
            kind=Kind.REVERSAL,
            reversed_kind=entry.kind,
            idempotency_key=f"reversal:{entry.pk}",
            occurred_at=occurred_at,
            reverses_id=entry.pk,
            time_category=entry.time_category,
            attempt_id=entry.attempt_id,
            annotation_id=entry.annotation_id,
            reading_id=entry.reading_id,
            policy_id=entry.policy_id,
            active_seconds=-entry.active_seconds,
            wall_seconds=-entry.wall_seconds,
            counted_seconds=-entry.counted_seconds,
            units=-entry.units,
            amount=-entry.amount,
            floor_amount=-entry.floor_amount,
            client_amount=-entry.client_amount,
            acting_user_id=acting_user_id,
            reason=reason,
        )

    def task_ended(self, annotator_id: int, at: datetime) -> None:
        """Remember when the annotator's latest task ended (for time between tasks)."""
        delta = self._balances.setdefault(annotator_id, {"amount": ZERO, "count": 0, "seq": 0, "task_end": None})
        delta["task_end"] = max(at, delta["task_end"] or at)

    def flush(self) -> None:
        if self.pending:
            LedgerEntry.objects.bulk_create(self.pending)
            self.head.save(update_fields=["seq", "last_hash", "updated_at"])
            self.pending = []
        for annotator_id, delta in self._balances.items():
            end = delta["task_end"]
            updates = {}
            if delta["count"]:
                updates.update(
                    amount=F("amount") + delta["amount"],
                    entry_count=F("entry_count") + delta["count"],
                    last_seq=delta["seq"],
                )
            if end is not None:
                updates["last_task_end"] = Greatest(Coalesce(F("last_task_end"), Value(end)), Value(end))
            if not updates:
                continue
            rows = Balance.objects.filter(project_id=self.project.pk, annotator_id=annotator_id)
            if not rows.update(**updates):
                Balance.objects.create(
                    project_id=self.project.pk,
                    annotator_id=annotator_id,
                    currency=self.project.currency,
                    amount=delta["amount"],
                    entry_count=delta["count"],
                    last_seq=delta["seq"],
                    last_task_end=end,
                )
        self._balances = {}
        self._accounts = {}


@contextmanager
def _open_books(project: Project) -> Iterator[_Books]:
    books = _Books(project)
    yield books
    books.flush()


# --- pricing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Priced:
    kind: str
    amount: Decimal
    counted_seconds: Decimal
    floor_amount: Decimal
    client_amount: Decimal


def _clock(clock: str, *, active: Decimal, wall: Decimal) -> Decimal:
    return wall if clock == Clock.WALL else active


def price_time(*, policy: PayPolicy | None, category: str, active: Decimal, wall: Decimal) -> _Priced:
    """How a span of time in `category` is paid and counted under `policy`.

    hourly_pay when the policy's hourly rate pays the category; otherwise work_time for the
    time of an accepted label (the piece_pay entry carries its money) and unpaid_time for
    everything else. Counted (hours worked) seconds earn the floor and per-hour client prices.
    """
    if policy is None:
        counted = active if category in DEFAULT_COUNTED_CATEGORIES else ZERO
        kind = Kind.WORK_TIME if category == TimeCategory.SUBMITTED else Kind.UNPAID_TIME
        return _Priced(kind, ZERO, counted, ZERO, ZERO)
    amount = ZERO
    if policy.hourly_rate > 0 and category in policy.hourly_categories:
        kind = Kind.HOURLY_PAY
        amount = money.hourly(policy.hourly_rate, _clock(policy.hourly_clock, active=active, wall=wall))
    elif category == TimeCategory.SUBMITTED:
        kind = Kind.WORK_TIME
    else:
        kind = Kind.UNPAID_TIME
    counted = _clock(policy.floor_clock, active=active, wall=wall) if category in policy.floor_categories else ZERO
    floor_amount = money.hourly(policy.floor_hourly_rate, counted)
    client_amount = money.hourly(policy.client_price_per_hour, counted) if policy.client_price_per_hour else ZERO
    return _Priced(kind, amount, counted, floor_amount, client_amount)


def _is_overlap(annotation: Annotation) -> bool:
    """An overlap item: another annotator's label on the same example was accepted before this one."""
    return (
        Annotation.objects.filter(
            example_id=annotation.example_id, status=Annotation.Status.ACCEPTED, source=Annotation.Source.HUMAN
        )
        .exclude(annotator_id=annotation.annotator_id)
        .filter(created_at__lte=annotation.created_at, pk__lt=annotation.pk)
        .exists()
    )


# --- attempts ---------------------------------------------------------------------------


def _attempt_category(attempt: Attempt, annotation: Annotation | None) -> str | None:
    if attempt.status == Attempt.Status.SKIPPED:
        return TimeCategory.SKIPPED
    if attempt.status == Attempt.Status.EXPIRED:
        return TimeCategory.EXPIRED
    if attempt.status == Attempt.Status.SUBMITTED:
        if annotation is None or annotation.status == Annotation.Status.ACCEPTED:
            return TimeCategory.SUBMITTED
        if annotation.status == Annotation.Status.RETRACTED:
            return TimeCategory.RETRACTED
        return TimeCategory.REJECTED
    return None  # still claimed: nothing to record yet


def _reconcile_attempt(
    *,
    books: _Books,
    attempt: Attempt,
    annotation: Annotation | None,
    booked_at: datetime,
    acting_user_id,
    reason: str,
    entries: list[LedgerEntry],
    policy: PayPolicy | None,
) -> list[LedgerEntry]:
    """Bring the attempt's entries in step with its state. Returns the entries written."""
    category = _attempt_category(attempt, annotation)
    if category is None:
        return []
    reversed_ids = {e.reverses_id for e in entries if e.reverses_id}
    live = [e for e in entries if e.kind != Kind.REVERSAL and e.pk not in reversed_ids]
    live_time = [e for e in live if e.kind in TIME_KINDS and e.time_category != TimeCategory.BETWEEN_TASKS]
    live_pay = [e for e in live if e.kind == Kind.PIECE_PAY]
    written = []

    def reverse(entry, why):
        written.append(books.reverse(entry, occurred_at=booked_at, acting_user_id=acting_user_id, reason=why))

    # The time: one live entry, in the category that says what became of the attempt.
    keep = next((e for e in live_time if e.time_category == category), None)
    for entry in live_time:
        if entry is not keep:
            reverse(entry, f"{reason}: time moves from {entry.time_category} to {category}")
    if keep is None:
        active = money.seconds(attempt.active_seconds)
        wall = money.seconds(attempt.wall_seconds or 0)
        priced = price_time(policy=policy, category=category, active=active, wall=wall)
        n = sum(1 for e in entries if e.kind in TIME_KINDS and e.time_category != TimeCategory.BETWEEN_TASKS) + 1
        written.append(
            books.add(
                annotator_id=attempt.annotator_id,
                kind=priced.kind,
                idempotency_key=f"attempt:{attempt.pk}:time:{n}",
                occurred_at=booked_at,
                time_category=category,
                attempt_id=attempt.pk,
                annotation_id=annotation.pk if annotation else None,
                policy=policy,
                active_seconds=active,
                wall_seconds=wall,
                counted_seconds=priced.counted_seconds,
                amount=priced.amount,
                floor_amount=priced.floor_amount,
                client_amount=priced.client_amount,
                acting_user_id=acting_user_id,
                reason=reason,
            )
        )

    # The pay: one live piece_pay entry while the label is accepted (and human), none otherwise.
    should_pay = (
        annotation is not None
        and annotation.status == Annotation.Status.ACCEPTED
        and annotation.source == Annotation.Source.HUMAN
    )
    if should_pay:
        for extra in live_pay[1:]:  # never expected: the chain lock serializes payers
            reverse(extra, f"{reason}: duplicate piece pay")
    else:
        for paid in live_pay:
            reverse(paid, f"{reason}: label is {annotation.status if annotation else 'gone'}, unpaid")
    if should_pay and not live_pay:
        gold = attempt.example.gold_label_id is not None
        overlap = _is_overlap(annotation)
        rate = policy.piece_rate_for(gold=gold, overlap=overlap) if policy else ZERO
        n = sum(1 for e in entries if e.kind == Kind.PIECE_PAY) + 1
        note = "piece rate"
        if policy and gold and policy.gold_piece_rate is not None:
            note = "gold item"
        elif policy and overlap and policy.overlap_piece_rate is not None:
            note = "overlap item"
        written.append(
            books.add(
                annotator_id=attempt.annotator_id,
                kind=Kind.PIECE_PAY,
                idempotency_key=f"attempt:{attempt.pk}:piece:{n}",
                occurred_at=booked_at,
                attempt_id=attempt.pk,
                annotation_id=annotation.pk,
                policy=policy,
                units=1,
                amount=rate,
                client_amount=(policy.client_price_per_example or ZERO) if policy else ZERO,
                acting_user_id=acting_user_id,
                reason=f"{reason} ({note})",
            )
        )
    return written


def _record_between_tasks(
    *, books: _Books, attempt: Attempt, entries: list[LedgerEntry], policy: PayPolicy | None
) -> LedgerEntry | None:
    """Unpaid time between the end of the annotator's previous task (submitted or skipped) and
    this one appearing, when the gap is short enough to be the same work session. Remembers
    this task's end for the next one."""
    if attempt.status not in (Attempt.Status.SUBMITTED, Attempt.Status.SKIPPED):
        return None
    account = books.account(attempt.annotator_id)
    previous_end = account.last_task_end if account else None
    books.task_ended(attempt.annotator_id, attempt.finished_at)
    if attempt.shown_at is None or previous_end is None:
        return None
    if any(e.time_category == TimeCategory.BETWEEN_TASKS for e in entries):
        return None  # recorded when this attempt first finished
    gap = attempt.shown_at - previous_end
    if gap <= timedelta(0) or gap > timedelta(seconds=settings.TALLY_LEDGER_SESSION_GAP_SECONDS):
        return None
    wall = money.seconds(gap.total_seconds())
    priced = price_time(policy=policy, category=TimeCategory.BETWEEN_TASKS, active=ZERO, wall=wall)
    return books.add(
        annotator_id=attempt.annotator_id,
        kind=priced.kind,
        idempotency_key=f"attempt:{attempt.pk}:between",
        occurred_at=attempt.finished_at,
        time_category=TimeCategory.BETWEEN_TASKS,
        attempt_id=attempt.pk,
        policy=policy,
        wall_seconds=wall,
        counted_seconds=priced.counted_seconds,
        amount=priced.amount,
        floor_amount=priced.floor_amount,
        client_amount=priced.client_amount,
        acting_user_id=attempt.annotator_id,
        reason="time between tasks in a work session",
    )


def _attempt_entries(attempt: Attempt) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(attempt=attempt).order_by("seq"))


@transaction.atomic
def attempt_finished(*, attempt: Attempt, annotation: Annotation | None) -> list[LedgerEntry]:
    """An attempt ended (submitted, skipped or expired): record its time and pay.

    Called by annotation.services in the transaction that closes the attempt.
    """
    if attempt.status == Attempt.Status.CLAIMED or attempt.finished_at is None:
        return []
    acting = _acting.get()
    reason = {
        Attempt.Status.SUBMITTED: "attempt submitted",
        Attempt.Status.SKIPPED: "attempt skipped",
        Attempt.Status.EXPIRED: "claim expired",
    }[attempt.status]
    with _open_books(attempt.project) as books:
        entries = _attempt_entries(attempt)
        policy = policy_in_force(project_id=attempt.project_id, at=attempt.finished_at)
        written = _reconcile_attempt(
            books=books,
            attempt=attempt,
            annotation=annotation,
            booked_at=attempt.finished_at,
            acting_user_id=acting.user_id if acting else attempt.annotator_id,
            reason=reason,
            entries=entries,
            policy=policy,
        )
        between = _record_between_tasks(books=books, attempt=attempt, entries=entries, policy=policy)
    return written + ([between] if between else [])


@transaction.atomic
def annotation_status_changed(*, annotation: Annotation, previous_status: str) -> list[LedgerEntry]:
    """A label was retracted, rejected or re-accepted: pay or unpay it with new entries.

    The time moves to the category that says what became of the label (a reversal and a new
    time entry, priced under the policy the work was done under); the piece pay is reversed,
    or paid again by a new entry on re-acceptance. Booked at the time of the change.
    """
    if annotation.attempt_id is None or annotation.source != Annotation.Source.HUMAN:
        return []  # a machine label is not human labor: nothing to pay
    attempt = Attempt.objects.select_related("project", "example").get(pk=annotation.attempt_id)
    acting = _acting.get()
    if acting is not None:
        actor_id = acting.user_id
    else:
        actor_id = annotation.annotator_id if annotation.status == Annotation.Status.RETRACTED else None
    reason = f"label {previous_status} -> {annotation.status}"
    if acting is not None and acting.reason:
        reason = f"{reason}: {acting.reason}"
    with _open_books(attempt.project) as books:
        return _reconcile_attempt(
            books=books,
            attempt=attempt,
            annotation=annotation,
            booked_at=annotation.status_changed_at or timezone.now(),
            acting_user_id=actor_id,
            reason=reason,
            entries=_attempt_entries(attempt),
            policy=policy_in_force(project_id=attempt.project_id, at=attempt.finished_at),
        )


@transaction.atomic
def annotation_review(
    *, annotation: Annotation, status: str, actor, reason: str = "", now: datetime | None = None
) -> Annotation:
    """An admin rejects a label (or accepts it again). The ledger answers through
    annotation_status_changed, with `actor` and `reason` on the entries."""
    from annotation import services as annotation_services  # annotation.services imports this module

    if status not in (Annotation.Status.REJECTED, Annotation.Status.ACCEPTED):
        raise ValidationFailed("An admin can reject a label or accept it again.")
    annotation = Annotation.objects.select_for_update().filter(pk=annotation.pk).first()
    if annotation is None:
        raise NotFound("No such annotation.")
    if annotation.source != Annotation.Source.HUMAN:
        raise ValidationFailed("Only human labels are reviewed here.")
    if status == Annotation.Status.ACCEPTED and annotation.status == Annotation.Status.RETRACTED:
        raise Conflict("The annotator undid this label; it cannot be accepted in their name.", code="retracted")
    try:
        with transaction.atomic(), acting_as(actor, reason):
            return annotation_services.annotation_set_status(annotation=annotation, status=status, now=now)
    except IntegrityError as exc:
        raise Conflict(
            "This annotator has another accepted label on the same text; reject that one first.", code="duplicate_label"
        ) from exc


# --- manual entries -----------------------------------------------------------------------


@transaction.atomic
def manual_entry_create(
    *,
    project: Project,
    annotator,
    kind: str,
    amount: Decimal,
    reason: str,
    actor,
    idempotency_key: str,
    now: datetime | None = None,
) -> LedgerEntry:
    """A bonus (positive) or an adjustment (either sign) by an admin. Needs a reason and an
    idempotency key; the same key again returns the first entry."""
    now = now or timezone.now()
    if kind not in MANUAL_KINDS:
        raise ValidationFailed("Admins post bonuses and adjustments; other entries come from the work itself.")
    amount = Decimal(amount)
    if kind == Kind.BONUS and amount <= 0:
        raise ValidationFailed("A bonus is a positive amount; use an adjustment to take money back.")
    if amount == 0:
        raise ValidationFailed("An entry of zero changes nothing.")
    if not reason.strip():
        raise ValidationFailed("Say why: every manual entry needs a reason.")
    if not project.memberships.filter(user=annotator).exists():
        raise ValidationFailed("That person is not a member of this project.")
    key = f"manual:{project.pk}:{idempotency_key}"
    earlier = LedgerEntry.objects.filter(idempotency_key=key).first()
    if earlier is not None:
        if (earlier.annotator_id, earlier.kind, earlier.amount) != (annotator.pk, kind, money.entry_amount(amount)):
            raise Conflict("This idempotency key was already used for a different entry.", code="key_reused")
        return earlier
    with _open_books(project) as books:
        entry = books.add(
            annotator_id=annotator.pk,
            kind=kind,
            idempotency_key=key,
            occurred_at=now,
            policy=policy_in_force(project_id=project.pk, at=now),
            amount=amount,
            acting_user_id=actor.pk if actor else None,
            reason=reason.strip(),
        )
    return entry


# --- instruction reading --------------------------------------------------------------------


def _credit(reading: InstructionReading, now: datetime) -> None:
    """Same rule as attempts: a heartbeat vouches for the gap before it up to the max gap,
    a later one for one heartbeat interval only."""
    gap = now - reading.last_active_at
    if gap > timedelta(seconds=settings.TALLY_HEARTBEAT_MAX_GAP_SECONDS):
        gap = timedelta(seconds=settings.TALLY_HEARTBEAT_INTERVAL_SECONDS)
    reading.active_seconds = money.seconds(reading.active_seconds + money.seconds(max(gap.total_seconds(), 0)))
    reading.last_active_at = max(now, reading.last_active_at)


def _idle(reading: InstructionReading, now: datetime) -> bool:
    return now - reading.last_active_at > timedelta(seconds=settings.TALLY_IDLE_CUTOFF_SECONDS)


def _close_reading(reading: InstructionReading, *, end: datetime) -> LedgerEntry:
    reading.ended_at = end
    reading.wall_seconds = money.seconds(max((end - reading.started_at).total_seconds(), 0))
    reading.save(update_fields=["ended_at", "wall_seconds", "active_seconds", "last_active_at", "heartbeat_count"])
    project = Project.objects.get(pk=reading.project_id)
    policy = policy_in_force(project_id=project.pk, at=end)
    priced = price_time(
        policy=policy,
        category=TimeCategory.INSTRUCTION_READING,
        active=reading.active_seconds,
        wall=reading.wall_seconds,
    )
    with _open_books(project) as books:
        entry = books.add(
            annotator_id=reading.annotator_id,
            kind=priced.kind,
            idempotency_key=f"reading:{reading.pk}",
            occurred_at=end,
            time_category=TimeCategory.INSTRUCTION_READING,
            reading_id=reading.pk,
            policy=policy,
            active_seconds=reading.active_seconds,
            wall_seconds=reading.wall_seconds,
            counted_seconds=priced.counted_seconds,
            amount=priced.amount,
            floor_amount=priced.floor_amount,
            client_amount=priced.client_amount,
            acting_user_id=reading.annotator_id,
            reason="reading the instructions",
        )
    return entry


def _open_reading(*, project: Project, annotator) -> InstructionReading | None:
    return (
        InstructionReading.objects.select_for_update()
        .filter(project=project, annotator=annotator, ended_at__isnull=True)
        .first()
    )


@transaction.atomic
def instructions_heartbeat(*, project: Project, annotator, now: datetime | None = None) -> InstructionReading:
    """The instructions are on screen and the annotator active. Starts a reading on the first
    heartbeat; one that went idle longer than TALLY_IDLE_CUTOFF_SECONDS is closed and a new one begun."""
    now = now or timezone.now()
    reading = _open_reading(project=project, annotator=annotator)
    if reading is not None and _idle(reading, now):
        _close_reading(reading, end=reading.last_active_at)
        reading = None
    if reading is None:
        try:
            with transaction.atomic():
                return InstructionReading.objects.create(
                    project=project, annotator=annotator, started_at=now, last_active_at=now, heartbeat_count=1
                )
        except IntegrityError:  # a concurrent heartbeat opened it first
            reading = _open_reading(project=project, annotator=annotator)
    _credit(reading, now)
    reading.heartbeat_count += 1
    reading.save(update_fields=["active_seconds", "last_active_at", "heartbeat_count"])
    return reading


@transaction.atomic
def instructions_close(*, project: Project, annotator, now: datetime | None = None) -> LedgerEntry | None:
    """The annotator left the instructions: close the reading and record its time."""
    now = now or timezone.now()
    reading = _open_reading(project=project, annotator=annotator)
    if reading is None:
        return None
    if _idle(reading, now):
        return _close_reading(reading, end=reading.last_active_at)
    _credit(reading, now)
    return _close_reading(reading, end=now)


def instruction_readings_close_stale(*, project: Project | None = None, now: datetime | None = None) -> int:
    """Close readings whose page stopped sending heartbeats; their time ends at the last one."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.TALLY_IDLE_CUTOFF_SECONDS)
    ids = InstructionReading.objects.filter(ended_at__isnull=True, last_active_at__lt=cutoff)
    if project is not None:
        ids = ids.filter(project=project)
    closed = 0
    for pk in list(ids.values_list("pk", flat=True)):
        with transaction.atomic():
            reading = (
                InstructionReading.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, ended_at__isnull=True, last_active_at__lt=cutoff)
                .first()
            )
            if reading is not None:
                _close_reading(reading, end=reading.last_active_at)
                closed += 1
    return closed


# --- settlement ----------------------------------------------------------------------------


SETTLEMENT_TOTALS = {
    "gross": Sum("amount"),
    "floor": Sum("floor_amount"),
    "active": Sum("active_seconds"),
    "wall": Sum("wall_seconds"),
    "counted": Sum("counted_seconds"),
    "examples": Sum("units"),
    "client": Sum("client_amount"),
}


def _settle_one(*, books: _Books, annotator_id: int, period: date, totals: dict, policy, actor, now: datetime):
    """The settlement of one annotator's period (not yet saved) and its top-up and rounding entries."""
    project = books.project
    gross = totals["gross"] or ZERO
    floor_target = max(totals["floor"] or ZERO, ZERO)
    counted = totals["counted"] or ZERO
    top_up = max(floor_target - gross, ZERO)
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
    with _open_books(project) as books:  # no append, no other settlement, while we count
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
    from annotation import services as annotation_services  # annotation.services imports this module

    now = now or timezone.now()
    annotation_services.attempts_expire(project=project, now=now)
    instruction_readings_close_stale(project=project, now=now)
    projects = (
        [project]
        if project is not None
        else list(Project.objects.filter(pk__in=LedgerEntry.objects.values("project_id").distinct()).order_by("pk"))
    )
    settlements: list[Settlement] = []
    failed = []
    for p in projects:
        try:
            settlements += project_settle(project=p, now=now, actor=actor)
        except Exception:  # one project's trouble must not hold back everyone else's pay
            logger.exception("labor ledger: settling project %s failed", p.slug)
            failed.append(p.slug)
    if failed:
        raise SettlementFailed(f"Settling failed for: {', '.join(failed)} (the others were settled; see the log).")
    return settlements


class SettlementFailed(RuntimeError):
    """Some projects could not be settled; the rest were."""
