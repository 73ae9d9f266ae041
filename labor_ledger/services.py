"""Writes for the labor ledger. Nothing else writes ledger rows.

The work is annotation's: it announces attempts closed, readings closed and labels whose
status changed (annotation/hooks.py), and the handlers here, connected in
`LaborLedgerConfig.ready()`, run inside the transaction that records the work, so the work and
its entries commit together or not at all. Appends go through `books.Books`; prices come from
`pricing`; closing periods is `settlement`'s.

Attempt entries are kept in step with the state of the work rather than replayed from
events (`_reconcile_attempt`): an attempt has exactly one live time entry whose category
says what became of it, and an accepted human annotation exactly one live piece_pay entry.
A call that finds the ledger already in step writes nothing, so retries and duplicate hooks
can never pay twice.
"""

import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from annotation import hooks
from annotation.models import Annotation, Attempt, Project, SensitiveMark
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed

from . import money, selectors
from .books import Books, open_books
from .durations import fmt_duration as _fmt_duration
from .models import (
    Balance,
    LedgerEntry,
    LedgerVerification,
    PayPolicy,
    Settlement,
    TimeCategory,
    TimeDispute,
    TimeDisputeDecision,
)
from .pricing import is_overlap, policy_in_force, price_time

logger = logging.getLogger(__name__)
Kind = LedgerEntry.Kind
ZERO = money.ZERO
TIME_KINDS = {Kind.HOURLY_PAY, Kind.WORK_TIME, Kind.UNPAID_TIME}
MANUAL_KINDS = {Kind.BONUS, Kind.ADJUSTMENT}


# --- policies ---------------------------------------------------------------------------


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
    "review_hourly_rate",
    "pay_rejected_work",
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


# --- attempts ---------------------------------------------------------------------------


def _attempt_category(attempt: Attempt, annotation: Annotation | None) -> str | None:
    if attempt.status == Attempt.Status.SKIPPED:
        if SensitiveMark.objects.filter(example_id=attempt.example_id).exists():
            return TimeCategory.SENSITIVE_SKIPPED  # never against them: paid as time worked
        return TimeCategory.SKIPPED
    if attempt.status == Attempt.Status.EXPIRED:
        return TimeCategory.EXPIRED
    if attempt.status == Attempt.Status.REVOKED:
        return TimeCategory.REVOKED
    if attempt.status == Attempt.Status.SUBMITTED:
        if annotation is None or annotation.status == Annotation.Status.ACCEPTED:
            return TimeCategory.SUBMITTED
        if annotation.status == Annotation.Status.RETRACTED:
            return TimeCategory.RETRACTED
        return TimeCategory.REJECTED
    return None  # still claimed: nothing to record yet


def _reconcile_attempt(
    *,
    books: Books,
    attempt: Attempt,
    annotation: Annotation | None,
    booked_at: datetime,
    acting_user_id,
    reason: str,
    entries: list[LedgerEntry],
    policy: PayPolicy | None,
    overlap: bool | None = None,
) -> list[LedgerEntry]:
    """Bring the attempt's entries in step with its state. Returns the entries written.
    `overlap`: is_overlap(annotation) when the caller read it already."""
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
    # A rejected label stays paid when the policy the work was done under says so (the default).
    paid_statuses = {Annotation.Status.ACCEPTED}
    if policy is None or policy.pay_rejected_work:
        paid_statuses.add(Annotation.Status.REJECTED)
    should_pay = (
        annotation is not None and annotation.status in paid_statuses and annotation.source == Annotation.Source.HUMAN
    )
    if should_pay:
        for extra in live_pay[1:]:  # never expected: the chain lock serializes payers
            reverse(extra, f"{reason}: duplicate piece pay")
    else:
        for paid in live_pay:
            reverse(paid, f"{reason}: label is {annotation.status if annotation else 'gone'}, unpaid")
    if should_pay and not live_pay:
        gold = attempt.example.gold_label_id is not None
        overlap = is_overlap(annotation) if overlap is None else overlap
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
    *, books: Books, attempt: Attempt, entries: list[LedgerEntry], policy: PayPolicy | None
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


# Pay policies are never edited (a change is a new version), so a version read once is kept,
# per process, by (id, created_at).
_POLICIES: dict[tuple[int, datetime], PayPolicy] = {}


def _attempt_facts(
    books: Books, attempt: Attempt, annotation: Annotation | None
) -> tuple[list[LedgerEntry], PayPolicy | None, bool | None] | None:
    """PostgreSQL: what attempt_closed reads once the chain head is locked, in one statement
    instead of five (the hot path, issue 18): whether the attempt has entries yet, the pay
    policy in force, the annotator's last settled period and balance (handed to `books`), and
    whether a paid label is an overlap item. Returns (entries, policy, overlap), or None on
    SQLite, where the reads stay separate. An attempt with entries already (a retried or
    re-closed one) reads them as before."""
    if connection.vendor != "postgresql":
        return None
    paid = (
        annotation is not None
        and annotation.status == Annotation.Status.ACCEPTED
        and annotation.source == Annotation.Source.HUMAN
    )
    t_entry, t_policy = LedgerEntry._meta.db_table, PayPolicy._meta.db_table
    t_settlement, t_balance = Settlement._meta.db_table, Balance._meta.db_table
    t_annotation = Annotation._meta.db_table
    overlap_sql = (
        f"EXISTS (SELECT 1 FROM {t_annotation} WHERE example_id = %s AND status = %s AND source = %s "  # noqa: S608
        "AND annotator_id <> %s AND created_at <= %s AND id < %s)"
        if paid
        else "NULL"
    )
    sql = (
        f"SELECT EXISTS (SELECT 1 FROM {t_entry} WHERE attempt_id = %s), "  # noqa: S608
        f"p.id, p.created_at, "
        f"(SELECT period FROM {t_settlement} WHERE project_id = %s AND annotator_id = %s "
        "ORDER BY period DESC LIMIT 1), "
        f"b.id, b.last_task_end, {overlap_sql} "
        f"FROM (SELECT 1) AS one "
        f"LEFT JOIN (SELECT id, created_at FROM {t_policy} WHERE project_id = %s AND effective_from <= %s "
        "ORDER BY effective_from DESC LIMIT 1) AS p ON TRUE "
        f"LEFT JOIN {t_balance} AS b ON b.project_id = %s AND b.annotator_id = %s"
    )
    params = [attempt.pk, attempt.project_id, attempt.annotator_id]
    if paid:
        params += [
            annotation.example_id,
            Annotation.Status.ACCEPTED,
            Annotation.Source.HUMAN,
            annotation.annotator_id,
            annotation.created_at,
            annotation.pk,
        ]
    params += [attempt.project_id, attempt.finished_at, attempt.project_id, attempt.annotator_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        has_entries, policy_id, policy_created, last_settled, balance_id, last_task_end, overlap = cursor.fetchone()
    books.remember(
        attempt.annotator_id,
        last_settled=last_settled,
        account=None
        if balance_id is None
        else Balance(
            id=balance_id,
            project_id=attempt.project_id,
            annotator_id=attempt.annotator_id,
            last_task_end=last_task_end,
        ),
    )
    policy = None
    if policy_id is not None:
        policy = _POLICIES.get((policy_id, policy_created))
        if policy is None:
            policy = PayPolicy.objects.get(pk=policy_id)
            if len(_POLICIES) > 1000:
                _POLICIES.clear()
            _POLICIES[(policy_id, policy_created)] = policy
    entries = _attempt_entries(attempt) if has_entries else []
    return entries, policy, overlap


def _attempt_entries(attempt: Attempt) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(attempt=attempt).order_by("seq"))


ATTEMPT_REASONS = {
    Attempt.Status.SUBMITTED: "attempt submitted",
    Attempt.Status.SKIPPED: "attempt skipped",
    Attempt.Status.EXPIRED: "claim expired",
    Attempt.Status.REVOKED: "claim revoked: the person may no longer label in this project",
}


@transaction.atomic(savepoint=False)  # inside the work's own transaction
def attempt_closed(event: hooks.AttemptClosed) -> list[LedgerEntry]:
    """An attempt ended (submitted, skipped or expired): record its time and pay, in the
    transaction that closed it (annotation's `attempt_closed` hook)."""
    attempt, annotation = event.attempt, event.annotation
    if attempt.status == Attempt.Status.CLAIMED or attempt.finished_at is None:
        return []
    with open_books(attempt.project) as books:
        facts = _attempt_facts(books, attempt, annotation)
        if facts is None:
            entries = _attempt_entries(attempt)
            policy = policy_in_force(project_id=attempt.project_id, at=attempt.finished_at)
            overlap = None
        else:
            entries, policy, overlap = facts
        written = _reconcile_attempt(
            books=books,
            attempt=attempt,
            annotation=annotation,
            booked_at=attempt.finished_at,
            acting_user_id=event.acting_user_id,
            reason=ATTEMPT_REASONS[attempt.status],
            entries=entries,
            policy=policy,
            overlap=overlap,
        )
        between = _record_between_tasks(books=books, attempt=attempt, entries=entries, policy=policy)
    return written + ([between] if between else [])


@transaction.atomic(savepoint=False)  # inside the work's own transaction
def annotation_status_changed(event: hooks.AnnotationStatusChanged) -> list[LedgerEntry]:
    """A label was retracted, rejected or re-accepted: pay or unpay it with new entries.

    The time moves to the category that says what became of the label (a reversal and a new
    time entry, priced under the policy the work was done under); the piece pay is reversed,
    or paid again by a new entry on re-acceptance. Booked at the time of the change.
    """
    annotation = event.annotation
    if annotation.attempt_id is None or annotation.source != Annotation.Source.HUMAN:
        return []  # a machine label is not human labor: nothing to pay
    attempt = Attempt.objects.select_related("project", "example").get(pk=annotation.attempt_id)
    reason = f"label {event.previous_status} -> {annotation.status}"
    if event.reason:
        reason = f"{reason}: {event.reason}"
    with open_books(attempt.project) as books:
        return _reconcile_attempt(
            books=books,
            attempt=attempt,
            annotation=annotation,
            booked_at=annotation.status_changed_at or timezone.now(),
            acting_user_id=event.acting_user_id,
            reason=reason,
            entries=_attempt_entries(attempt),
            policy=policy_in_force(project_id=attempt.project_id, at=attempt.finished_at),
        )


@transaction.atomic(savepoint=False)  # inside the work's own transaction
def reading_closed(event: hooks.ReadingClosed) -> LedgerEntry:
    """A stretch of reading the instructions ended: record its time under the policy in force."""
    reading = event.reading
    return _book_time(
        project_id=reading.project_id,
        person_id=reading.annotator_id,
        category=TimeCategory.INSTRUCTION_READING,
        active=reading.active_seconds,
        wall=reading.wall_seconds,
        at=reading.ended_at,
        idempotency_key=f"reading:{reading.pk}",
        reason="reading the instructions",
        reading_id=reading.pk,
    )


@transaction.atomic(savepoint=False)  # inside the break's own transaction
def break_closed(event: hooks.BreakClosed) -> LedgerEntry | None:
    """A break ended: its paid part is time worked, in its own category (docs/welfare.md)."""
    brk = event.brk
    if brk.paid_seconds <= 0:
        return None
    paid = money.seconds(brk.paid_seconds)
    return _book_time(
        project_id=brk.project_id,
        person_id=brk.user_id,
        category=TimeCategory.BREAK,
        active=paid,
        wall=paid,
        at=brk.ended_at,
        idempotency_key=f"break:{brk.pk}",
        reason=f"paid break ({brk.paid_seconds} s of {brk.credited_seconds} s taken)",
    )


@transaction.atomic(savepoint=False)  # inside the work's own transaction
def review_closed(event: hooks.ReviewClosed) -> LedgerEntry:
    """A stretch of reviewing ended: record the reviewer's time under the policy in force,
    in its own category (pricing: paid by the hour, always counted as hours worked)."""
    session = event.session
    return _book_time(
        project_id=session.project_id,
        person_id=session.reviewer_id,
        category=TimeCategory.REVIEW,
        active=session.active_seconds,
        wall=session.wall_seconds,
        at=session.ended_at,
        idempotency_key=f"review:{session.pk}",
        reason="reviewing labels",
    )


def _book_time(
    *, project_id, person_id, category, active, wall, at, idempotency_key: str, reason: str, **refs
) -> LedgerEntry:
    """One span of a person's own time that is not an attempt (instruction reading, a paid
    break, reviewing): priced by the policy in force when it ended, appended once (the key)."""
    project = Project.objects.get(pk=project_id)
    policy = policy_in_force(project_id=project.pk, at=at)
    priced = price_time(policy=policy, category=category, active=active, wall=wall)
    with open_books(project) as books:
        return books.add(
            annotator_id=person_id,
            kind=priced.kind,
            idempotency_key=idempotency_key,
            occurred_at=at,
            time_category=category,
            policy=policy,
            active_seconds=active,
            wall_seconds=wall,
            counted_seconds=priced.counted_seconds,
            amount=priced.amount,
            floor_amount=priced.floor_amount,
            client_amount=priced.client_amount,
            acting_user_id=person_id,
            reason=reason,
            **refs,
        )


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
    with open_books(project) as books:
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


# --- verification records ----------------------------------------------------------------------


def ledger_verification_record(*, project: Project, actor, now: datetime | None = None) -> LedgerVerification:
    """Verify the project's books (selectors.ledger_verify: chain, balances, settlements) and
    record the result, so dashboards can say when the ledger was last checked and what it found.
    Reads the entries outside any transaction (it streams them); writes one row."""
    started = time.perf_counter()
    result = selectors.ledger_verify(project=project)
    return LedgerVerification.objects.create(
        project=project,
        verified_by=actor,
        ok=result.ok,
        entries=result.entries,
        head_seq=result.head_seq,
        head_hash=result.head_hash,
        problems=result.problems,
        seconds=time.perf_counter() - started,
        created_at=now or timezone.now(),
    )


# --- time disputes (issue 14, item 6) ----------------------------------------------------------

MAX_CLAIM_SECONDS = Decimal(24 * 3600)
MAX_NOTE_LENGTH = 2000


def _day_bounds(day) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def _disputed_attempt(*, project: Project, annotator, attempt_id: int) -> Attempt:
    # Someone else's attempt, or one of another project, is answered exactly like a missing one.
    attempt = Attempt.objects.filter(pk=attempt_id, project=project, annotator=annotator).first()
    if attempt is None:
        raise NotFound("No such attempt of yours in this project.", code="no_such_attempt")
    if attempt.status == Attempt.Status.CLAIMED or attempt.finished_at is None:
        raise Conflict("This text is still open: its time is recorded when you finish it.", code="attempt_open")
    return attempt


@transaction.atomic
def time_dispute_create(
    *,
    project: Project,
    annotator,
    claimed_seconds,
    note: str,
    attempt_id: int | None = None,
    day=None,
    now: datetime | None = None,
) -> TimeDispute:
    """An annotator contests the active time the ledger recorded for one of their closed
    attempts, or for one UTC day of theirs in this project, claiming `claimed_seconds`.

    The claim must be more than the ledger recorded and no more than the wall time it could
    have taken: the attempt's span (shown to finished), or the day's (24 h; for today, the time
    since midnight UTC). One open dispute per attempt or day at a time."""
    now = now or timezone.now()
    if (attempt_id is None) == (day is None):
        raise ValidationFailed("Contest either one attempt or one day.", code="dispute_subject")
    note = (note or "").strip()
    if not note:
        raise ValidationFailed("Say what happened: a dispute needs a note.", code="dispute_note")
    if len(note) > MAX_NOTE_LENGTH:
        raise ValidationFailed(f"Keep the note under {MAX_NOTE_LENGTH} characters.", code="dispute_note")
    try:
        claimed = money.seconds(Decimal(claimed_seconds))
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise ValidationFailed("Give the duration you claim in seconds.", code="dispute_duration") from exc
    if not claimed.is_finite() or claimed <= 0:
        raise ValidationFailed("The duration you claim must be more than zero.", code="dispute_duration")
    if claimed > MAX_CLAIM_SECONDS:
        raise ValidationFailed("A claim cannot exceed 24 hours.", code="dispute_duration")
    own = LedgerEntry.objects.filter(project=project, annotator=annotator)
    open_disputes = TimeDispute.objects.filter(project=project, annotator=annotator, decision__isnull=True)
    if attempt_id is not None:
        attempt = _disputed_attempt(project=project, annotator=annotator, attempt_id=attempt_id)
        wall = money.seconds(attempt.wall_seconds or 0)
        if claimed > wall:
            raise ValidationFailed(
                f"You claim {_fmt_duration(claimed)}, more than this text was on your screen "
                f"({_fmt_duration(wall)}, from shown to finished).",
                code="dispute_duration",
            )
        day = attempt.finished_at.astimezone(UTC).date()
        recorded = own.filter(attempt=attempt).aggregate(s=Sum("active_seconds"))["s"] or ZERO
        open_disputes = open_disputes.filter(attempt=attempt)
        subject = "this text"
    else:
        start, end = _day_bounds(day)
        if start > now:
            raise ValidationFailed("That day has not begun yet.", code="dispute_day")
        wall = money.seconds(Decimal((min(end, now) - start).total_seconds()))
        if claimed > wall:
            raise ValidationFailed(
                f"You claim {_fmt_duration(claimed)}, more than the wall time of {day.isoformat()} "
                f"({_fmt_duration(wall)} so far, UTC).",
                code="dispute_duration",
            )
        recorded = (
            own.filter(occurred_at__gte=start, occurred_at__lt=end).aggregate(s=Sum("active_seconds"))["s"] or ZERO
        )
        open_disputes = open_disputes.filter(attempt__isnull=True, day=day)
        subject = f"{day.isoformat()}"
    if claimed <= recorded:
        raise ValidationFailed(
            f"The ledger already records {_fmt_duration(recorded)} of active time for {subject}; claim more than that.",
            code="dispute_duration",
        )
    # One open dispute per subject: the annotator's balance row serializes their filings.
    Balance.objects.select_for_update().filter(project=project, annotator=annotator).first()
    if open_disputes.exists():
        raise Conflict(f"You already have an open dispute for {subject}.", code="dispute_open")
    dispute = TimeDispute(
        project=project,
        annotator=annotator,
        attempt_id=attempt_id,
        day=day,
        recorded_seconds=recorded,
        claimed_seconds=claimed,
        note=note,
        created_at=now,
    )
    dispute.save()
    return dispute


def _attempt_time_category(dispute: TimeDispute) -> str:
    """The category of the attempt's live time entry (what became of it); a day is work time."""
    if dispute.attempt_id is None:
        return TimeCategory.SUBMITTED
    entries = list(LedgerEntry.objects.filter(attempt_id=dispute.attempt_id).exclude(time_category=""))
    reversed_ids = {e.reverses_id for e in entries if e.reverses_id}
    live = [
        e
        for e in entries
        if e.kind in TIME_KINDS and e.pk not in reversed_ids and e.time_category != TimeCategory.BETWEEN_TASKS
    ]
    return live[-1].time_category if live else TimeCategory.SUBMITTED


def _price_granted_time(*, policy: PayPolicy | None, category: str, granted: Decimal) -> dict:
    """Time granted by an accepted dispute counts as hours worked (toward the floor) and is paid
    at the policy's hourly rate for that work, never below the floor rate: its amount equals
    at least its own floor, so the period's top-up neither pays it twice nor misses it."""
    if policy is None:
        return {"amount": ZERO, "floor_amount": ZERO, "client_amount": ZERO}
    priced = price_time(policy=policy, category=category, active=granted, wall=granted)
    floor = money.hourly(policy.floor_hourly_rate, granted)
    client = money.hourly(policy.client_price_per_hour, granted) if policy.client_price_per_hour else ZERO
    return {"amount": max(priced.amount, floor), "floor_amount": floor, "client_amount": client}


@transaction.atomic
def time_dispute_decide(
    *,
    dispute: TimeDispute,
    actor,
    accept: bool,
    reason: str = "",
    granted_seconds=None,
    now: datetime | None = None,
) -> TimeDisputeDecision:
    """An admin accepts a dispute (an adjustment entry for the granted seconds, by default the
    claim minus what was recorded, naming the admin and the dispute) or rejects it with a
    reason. A dispute is decided once; an admin never decides their own."""
    now = now or timezone.now()
    dispute = TimeDispute.objects.select_for_update().select_related("project", "annotator").get(pk=dispute.pk)
    earlier = TimeDisputeDecision.objects.filter(dispute=dispute).first()
    if earlier is not None:
        raise Conflict(f"This dispute is already closed ({earlier.outcome}).", code="dispute_closed")
    if actor is not None and actor.pk == dispute.annotator_id:
        raise Forbidden("Another admin decides your own dispute.", code="own_dispute")
    reason = (reason or "").strip()
    if len(reason) > MAX_NOTE_LENGTH:
        raise ValidationFailed(f"Keep the reason under {MAX_NOTE_LENGTH} characters.", code="decision_reason")
    if not accept:
        if not reason:
            raise ValidationFailed("Say why the dispute is rejected.", code="decision_reason")
        return TimeDisputeDecision.objects.create(
            dispute=dispute,
            outcome=TimeDisputeDecision.Outcome.REJECTED,
            decided_by=actor,
            reason=reason,
            created_at=now,
        )
    gap = dispute.claimed_seconds - dispute.recorded_seconds
    try:
        granted = gap if granted_seconds in (None, "") else money.seconds(Decimal(granted_seconds))
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise ValidationFailed("Give the seconds granted as a number.", code="decision_seconds") from exc
    if not granted.is_finite() or granted <= 0 or granted > gap:
        raise ValidationFailed(
            f"Grant more than 0 and at most {_fmt_duration(gap)} ({gap} s: the claim minus what was recorded).",
            code="decision_seconds",
        )
    project = dispute.project
    policy = policy_in_force(project_id=project.pk, at=now)
    priced = _price_granted_time(policy=policy, category=_attempt_time_category(dispute), granted=granted)
    subject = f"attempt {dispute.attempt_id}" if dispute.attempt_id else f"day {dispute.day.isoformat()}"
    why = f"time dispute #{dispute.pk} ({subject}) accepted by {actor.get_username()}: +{_fmt_duration(granted)}"
    with open_books(project) as books:
        midday = datetime.combine(dispute.day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
        entry = books.add(
            annotator_id=dispute.annotator_id,
            kind=Kind.ADJUSTMENT,
            idempotency_key=f"dispute:{dispute.pk}",
            occurred_at=now,
            period=books.period_for(dispute.annotator_id, min(midday, now)),
            attempt_id=dispute.attempt_id,
            policy=policy,
            counted_seconds=granted,
            acting_user_id=actor.pk,
            reason=f"{why}. {reason}" if reason else why,
            **priced,
        )
    return TimeDisputeDecision.objects.create(
        dispute=dispute,
        outcome=TimeDisputeDecision.Outcome.ACCEPTED,
        decided_by=actor,
        reason=reason,
        granted_seconds=granted,
        entry=entry,
        created_at=now,
    )
