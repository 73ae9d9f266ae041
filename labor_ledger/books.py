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
from core import sqlcompose

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
        head = _lock_project_and_head(project_id)
        if head is not None:
            return head
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {Project._meta.db_table} WHERE id = %s FOR KEY SHARE", [project_id])  # noqa: S608
    head = ChainHead.objects.select_for_update().filter(project_id=project_id).first()
    if head is None:
        ChainHead.objects.bulk_create([ChainHead(project_id=project_id)], ignore_conflicts=True)
        head = ChainHead.objects.select_for_update().get(project_id=project_id)
    return head


def _lock_project_and_head(project_id: int) -> ChainHead | None:
    """Both of lock_chain's locks in one statement, in the same order (the hot path, issue 18):
    PostgreSQL takes a statement's row locks clause by clause, the project row's KEY SHARE
    first, then the head's FOR UPDATE. None while the project has no chain head yet."""
    columns = ", ".join(f'h."{f.column}"' for f in ChainHead._meta.concrete_fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {ChainHead._meta.db_table} AS h "  # noqa: S608
            f"JOIN {Project._meta.db_table} AS p ON p.id = h.project_id "
            "WHERE h.project_id = %s FOR KEY SHARE OF p FOR UPDATE OF h",
            [project_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return sqlcompose.from_row(ChainHead, [f.attname for f in ChainHead._meta.concrete_fields], row)


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

    def remember(self, annotator_id: int, *, last_settled: date | None, account: Balance | None) -> None:
        """What the caller already read, under this chain lock, of the annotator's last settled
        period and balance row (period_for and account then read nothing)."""
        self._last_settled[annotator_id] = last_settled
        self._accounts[annotator_id] = account

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
        if self.pending and connection.vendor == "postgresql":
            self._append_in_one_statement()
        if self.pending:
            LedgerEntry.objects.bulk_create(self.pending)
            self.head.save(update_fields=["seq", "last_hash", "last_mac", "updated_at"])
            self.pending = []
        for annotator_id, delta in self._balances.items():
            end = delta["task_end"]
            updates = self._balance_updates(delta)
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

    @staticmethod
    def _balance_updates(delta: dict) -> dict:
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
        return updates

    def _append_in_one_statement(self) -> None:
        """PostgreSQL: the entries, the chain head and the first annotator's balance in one
        statement (the ledger's append, issue 18), each part the SQL flush would send for it.
        A balance row that does not exist yet (and any further annotator's) is left to flush."""
        head = self.head
        head.updated_at = timezone.now()
        head_sql = (
            f"UPDATE {ChainHead._meta.db_table} SET seq = %s, last_hash = %s, last_mac = %s, "  # noqa: S608
            "updated_at = %s WHERE project_id = %s"
        )
        head_params = (head.seq, head.last_hash, head.last_mac, head.updated_at, head.project_id)
        balance_sql, balance_params, annotator_id = "SELECT 1 WHERE FALSE", (), None
        for candidate, delta in self._balances.items():
            updates = self._balance_updates(delta)
            if updates:
                rows = Balance.objects.filter(project_id=self.project.pk, annotator_id=candidate)
                balance_sql, balance_params = sqlcompose.update_sql(rows, **updates)
                balance_sql += " RETURNING 1"
                annotator_id = candidate
                break
        insert, insert_params = sqlcompose.insert_sql(self.pending, returning=("pk",))
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH head AS ({head_sql}), balance AS ({balance_sql}) {insert}, (SELECT count(*) FROM balance)",  # noqa: S608
                head_params + balance_params + insert_params,
            )
            rows = cursor.fetchall()
        sqlcompose.mark_saved(self.pending, [row[0] for row in rows])
        self.pending = []
        if annotator_id is not None and rows[0][1]:
            del self._balances[annotator_id]  # written above


@contextmanager
def open_books(project: Project) -> Iterator[Books]:
    books = Books(project)
    yield books
    books.flush()
