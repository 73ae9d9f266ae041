"""The books: appends to a project's hash chain, the balances beside it.

Every append goes through `Books`, which holds the project's chain head row locked
(SELECT ... FOR UPDATE) until the transaction ends: appends to one project are serialized,
each entry names the hash of the one before it, and the entries, the head and the balances
are written in bulk at the end of the service call. Every entry has a unique idempotency key
derived from what caused it, so no cause can be written twice. Lock order is always: the
work's own rows first, the chain head last.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime

from django.db import connection
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from annotation.models import Project

from . import chain, money, periods
from .models import Balance, ChainHead, LedgerEntry, Settlement

Kind = LedgerEntry.Kind
ZERO = money.ZERO


def lock_chain(project_id: int) -> ChainHead:
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


class Books:
    """One transaction's appends to one project's chain.

    Holds the chain head locked from construction to the end of the transaction, hands each
    new entry the next seq and the hash of the one before, and writes the entries, the head
    and the balances in bulk on flush(). Use through `open_books`, which flushes on exit.
    """

    def __init__(self, project: Project):
        self.project = project
        self.head = lock_chain(project.pk)
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
        chain.seal(entry, prev_link=head.last_mac or head.last_hash)  # hash_version 3 (chain.py)
        entry.full_clean(exclude=NOT_VALIDATED, validate_unique=False, validate_constraints=False)
        head.seq, head.last_hash, head.last_mac = entry.seq, entry.entry_hash, entry.mac
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
            self.head.save(update_fields=["seq", "last_hash", "last_mac", "updated_at"])
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
def open_books(project: Project) -> Iterator[Books]:
    books = Books(project)
    yield books
    books.flush()
