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
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotation import hooks
from annotation.models import Annotation, Attempt, Project
from core.errors import Conflict, ValidationFailed

from . import money, selectors
from .books import Books, open_books
from .models import LedgerEntry, LedgerVerification, PayPolicy, TimeCategory
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
        overlap = is_overlap(annotation)
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
        entries = _attempt_entries(attempt)
        policy = policy_in_force(project_id=attempt.project_id, at=attempt.finished_at)
        written = _reconcile_attempt(
            books=books,
            attempt=attempt,
            annotation=annotation,
            booked_at=attempt.finished_at,
            acting_user_id=event.acting_user_id,
            reason=ATTEMPT_REASONS[attempt.status],
            entries=entries,
            policy=policy,
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
    project = Project.objects.get(pk=reading.project_id)
    policy = policy_in_force(project_id=project.pk, at=reading.ended_at)
    priced = price_time(
        policy=policy,
        category=TimeCategory.INSTRUCTION_READING,
        active=reading.active_seconds,
        wall=reading.wall_seconds,
    )
    with open_books(project) as books:
        entry = books.add(
            annotator_id=reading.annotator_id,
            kind=priced.kind,
            idempotency_key=f"reading:{reading.pk}",
            occurred_at=reading.ended_at,
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
