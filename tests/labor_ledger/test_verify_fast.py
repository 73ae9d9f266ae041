"""The batch chain check (issue 18, item 2) against the entry-by-entry reference: on a tampered
ledger of each hash version (v1, v2, v3, and one chain holding all three) both report exactly the
same problems; on a genuine v3 ledger the batch check accepts every entry. And the pieces the
batch check rests on: its HMAC equals hmac.digest, and the compact bytes PostgreSQL computes equal
chain.compact() for varied entries (unicode, Decimals of different scales, nulls, negatives)."""

import hmac
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from labor_ledger import chain, checkpoints, settlement, verification
from labor_ledger.models import ChainHead, LedgerEntry
from tests.support.annotators import work

from .util import at

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="triggers exist on PostgreSQL only")
CHUNK = 3  # several chunks even in a small ledger: the batch check then hands some to the reference


def _sql(*statements, table: str = "labor_ledger_ledgerentry") -> None:
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for statement, params in statements:
            cur.execute(statement, params)
        cur.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def rewrite_as(project, versions: dict[int, int]) -> None:
    """Re-hash and re-sign the chain as history wrote it: entry #seq under versions[seq] (v1
    unkeyed JSON, v2 keyed JSON, v3 keyed compact), the v1 prefix sealed on the chain head."""
    prev, link, legacy_seq = chain.GENESIS, chain.GENESIS, 0
    updates = []
    for entry in LedgerEntry.objects.filter(project=project).order_by("seq"):
        entry.prev_hash = prev
        version = versions[entry.seq]
        if version == chain.HASH_V1:
            entry.hash_version, entry.mac, entry.mac_key_id = chain.HASH_V1, "", ""
            entry.entry_hash = chain.entry_hash(entry)
            link, legacy_seq = entry.entry_hash, entry.seq
        elif version == chain.HASH_V2:
            entry.hash_version = chain.HASH_V2
            entry.entry_hash = chain.entry_hash(entry)
            link = chain.sign(entry, prev_link=link)
        else:
            link = chain.seal(entry, prev_link=link)
        prev = entry.entry_hash
        updates.append(
            (
                "UPDATE labor_ledger_ledgerentry SET prev_hash = %s, entry_hash = %s, hash_version = %s, "
                "mac = %s, mac_key_id = %s WHERE id = %s",
                [entry.prev_hash, entry.entry_hash, entry.hash_version, entry.mac, entry.mac_key_id, entry.pk],
            )
        )
    _sql(*updates)
    head = ChainHead.objects.get(project=project)
    seal = chain.legacy_seal(project.pk, legacy_seq, _hash_of(project, legacy_seq)) if legacy_seq else ""
    ChainHead.objects.filter(pk=head.pk).update(
        last_hash=prev,
        last_mac=link if versions[head.seq] != chain.HASH_V1 else "",
        legacy_seq=legacy_seq,
        legacy_seal=seal,
    )
    # the settlement's checkpoint signed the chain as it was: sign the rewritten head instead
    _sql(
        ("DELETE FROM labor_ledger_ledgercheckpoint WHERE project_id = %s", [project.pk]),
        table="labor_ledger_ledgercheckpoint",
    )
    assert checkpoints.checkpoint(project=project, reason=checkpoints.Reason.VERIFIED) is not None


def _hash_of(project, seq: int) -> str:
    return LedgerEntry.objects.get(project=project, seq=seq).entry_hash


def _id_of(project, seq: int) -> int:
    return LedgerEntry.objects.get(project=project, seq=seq).pk


# what a database owner can do to the rows (the middle entry, or the one after it)
def _edit_field(project, seq):
    _sql(("UPDATE labor_ledger_ledgerentry SET amount = amount + 1 WHERE id = %s", [_id_of(project, seq)]))


def _edit_and_rehash(project, seq):
    """Edit a field and re-hash with the product's own chain code (no key: the MAC stays)."""
    entry = LedgerEntry.objects.get(project=project, seq=seq)
    entry.reason = "edited"
    entry.entry_hash = chain.entry_hash(entry)
    nxt = LedgerEntry.objects.get(project=project, seq=seq + 1)
    _sql(
        (
            "UPDATE labor_ledger_ledgerentry SET reason = %s, entry_hash = %s WHERE id = %s",
            [entry.reason, entry.entry_hash, entry.pk],
        ),
        ("UPDATE labor_ledger_ledgerentry SET prev_hash = %s WHERE id = %s", [entry.entry_hash, nxt.pk]),
    )


def _delete(project, seq):
    _sql(("DELETE FROM labor_ledger_ledgerentry WHERE id = %s", [_id_of(project, seq)]))


def _reorder(project, seq):
    a, b = _id_of(project, seq), _id_of(project, seq + 1)
    _sql(
        ("UPDATE labor_ledger_ledgerentry SET seq = 1000000 WHERE id = %s", [a]),
        ("UPDATE labor_ledger_ledgerentry SET seq = %s WHERE id = %s", [seq, b]),
        ("UPDATE labor_ledger_ledgerentry SET seq = %s WHERE id = %s", [seq + 1, a]),
    )


def _truncate(project, seq):
    _sql(("DELETE FROM labor_ledger_ledgerentry WHERE project_id = %s AND seq > %s", [project.pk, seq]))


def _mac(project, seq):
    _sql(("UPDATE labor_ledger_ledgerentry SET mac = reverse(mac) WHERE id = %s", [_id_of(project, seq)]))


def _unknown_key(project, seq):
    _sql(("UPDATE labor_ledger_ledgerentry SET mac_key_id = 'ffffffffffffffff' WHERE id = %s", [_id_of(project, seq)]))


def _prev_hash(project, seq):
    _sql(("UPDATE labor_ledger_ledgerentry SET prev_hash = reverse(prev_hash) WHERE id = %s", [_id_of(project, seq)]))


def _downgrade(project, seq):
    """Pass an entry off as unkeyed (v1) with a hash the product's chain code computes."""
    entry = LedgerEntry.objects.get(project=project, seq=seq)
    entry.hash_version = chain.HASH_V1
    entry.entry_hash = chain.entry_hash(entry)
    nxt = LedgerEntry.objects.get(project=project, seq=seq + 1)
    _sql(
        (
            "UPDATE labor_ledger_ledgerentry SET hash_version = 1, mac = '', mac_key_id = '', entry_hash = %s "
            "WHERE id = %s",
            [entry.entry_hash, entry.pk],
        ),
        ("UPDATE labor_ledger_ledgerentry SET prev_hash = %s WHERE id = %s", [entry.entry_hash, nxt.pk]),
    )


def _upper_case_mac(project, seq):
    """The same MAC in capitals: the same bytes to unhexlify, but not the MAC that was written."""
    _sql(("UPDATE labor_ledger_ledgerentry SET mac = upper(mac) WHERE id = %s", [_id_of(project, seq)]))


TAMPERINGS = {
    "field": _edit_field,
    "field re-hashed": _edit_and_rehash,
    "deleted": _delete,
    "reordered": _reorder,
    "truncated": _truncate,
    "mac": _mac,
    "unknown key": _unknown_key,
    "prev_hash": _prev_hash,
    "downgraded to v1": _downgrade,
    "mac in capitals": _upper_case_mac,
}
LEDGERS = {
    "v1": lambda n: dict.fromkeys(range(1, n + 1), chain.HASH_V1),
    "v2": lambda n: dict.fromkeys(range(1, n + 1), chain.HASH_V2),
    "v3": lambda n: dict.fromkeys(range(1, n + 1), chain.HASH_V3),
    "v1, v2, v3": lambda n: {
        s: chain.HASH_V1 if s <= n // 3 else chain.HASH_V2 if s <= 2 * n // 3 else chain.HASH_V3
        for s in range(1, n + 1)
    },
}


@pytest.fixture
def long_ledger(project, examples, annotator, policy):
    for i in range(6):
        work(project, annotator, start=at(40 * i), active_seconds=10, skip=i == 3)
    settlement.settle_due(project=project, now=at(days=1))
    return project


def _verify(project, *, fast: bool, parts: int = 1) -> verification.Verification:
    done = []

    def run_parts(chain_parts):
        done.extend(verification.verify_chain(p, chunk=CHUNK, fast=fast) for p in chain_parts)
        return done

    result = verification.verify_project(project=project, run_parts=run_parts, parts=parts)
    result.batched = sum(p.batched for p in done)
    return result


# on an unkeyed (v1) entry the MAC fields are not read: changing them is no tampering
_NOT_ON_V1 = {"downgraded to v1", "unknown key", "mac", "mac in capitals"}
CASES = [(v, t) for v in LEDGERS for t in TAMPERINGS if not (v == "v1" and t in _NOT_ON_V1)]


@postgres_only
@pytest.mark.parametrize(("versions", "tamper"), CASES)
def test_the_batch_check_and_the_reference_report_the_same_problems(long_ledger, versions, tamper, monkeypatch):
    monkeypatch.setattr(verification, "MIN_SPLIT", 2)
    n = ChainHead.objects.get(project=long_ledger).seq
    assert n >= 12
    rewrite_as(long_ledger, LEDGERS[versions](n))
    genuine = _verify(long_ledger, fast=True)
    assert genuine.ok, genuine.problems
    assert genuine.ok == _verify(long_ledger, fast=False).ok
    if versions == "v3":  # every chunk accepted in one go
        assert genuine.batched == n
    TAMPERINGS[tamper](long_ledger, n // 2 + 1)
    for parts in (1, 2):
        fast, reference = _verify(long_ledger, fast=True, parts=parts), _verify(long_ledger, fast=False, parts=parts)
        assert reference.problems, f"{tamper} went unnoticed"
        assert fast.problems == reference.problems
        assert (fast.entries, fast.head_seq, fast.head_hash) == (
            reference.entries,
            reference.head_seq,
            reference.head_hash,
        )


@postgres_only
def test_a_v3_ledger_is_checked_in_batches_but_for_the_chunk_with_the_bad_entry(long_ledger):
    n = ChainHead.objects.get(project=long_ledger).seq
    _edit_field(long_ledger, 5)  # in the second chunk of 3
    result = _verify(long_ledger, fast=True)
    assert result.problems[0] == "entry #5: its contents do not match its hash (changed after it was written)"
    assert result.batched == n - CHUNK


@pytest.mark.parametrize("key", [b"short", b"k" * 64, "längerer Schlüssel ✓".encode() * 9])
def test_the_batch_hmac_is_hmac_sha256(key):
    prefix = chain.mac_v3_prefix("0123456789abcdef")
    messages = ["", "a" * 64 + "\0" + "b" * 64, "ünïcode ✓ \U0001f600", "x" * 200]
    expected = [hmac.digest(key, prefix + m.encode(), "sha256").hex() for m in messages]
    assert verification._BatchHmac(key, prefix).hexdigests(iter(messages)) == expected


@postgres_only
def test_postgresql_encodes_varied_entries_byte_for_byte_as_chain_compact(long_ledger, annotator, admin_user):
    """COMPACT_SQL must give chain.compact()'s bytes for any entry, or a genuine entry would
    read as forged (or, worse, a forged one as genuine): amounts of every scale and sign, nulls
    and ids, non-ASCII and empty text, instants with microseconds before 1970 and far ahead."""
    first = LedgerEntry.objects.filter(project=long_ledger).order_by("seq").first()
    unreversed = LedgerEntry.objects.filter(project=long_ledger, reversed_by__isnull=True).order_by("-seq").first()
    top = ChainHead.objects.get(project=long_ledger).seq
    values = [
        (Decimal("1.5"), Decimal("12.3"), 'Korrektur für Ü — ✓ "quoted" \\ back \U0001f600', None),
        (Decimal("-0.000001"), Decimal("-5"), "", unreversed.pk),
        (Decimal("123456789012.123456"), Decimal("99999999999.999"), "tab\there\nnewline", None),
        (Decimal("7"), Decimal("0.001"), "e\u0301 combining; 中文; עברית", None),
        (Decimal("-42.10"), Decimal("-0.5"), " leading and trailing ", None),
        (Decimal("0"), Decimal("0"), "x" * 5000, None),
    ]
    instants = [
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1901, 3, 4, 5, 6, 7, 1, tzinfo=UTC),
        datetime(2030, 1, 7, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(2999, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 0, 0, 0, 10, tzinfo=UTC) + timedelta(hours=5),
    ]
    made = []
    for i, ((amount, seconds, reason, reverses), moment) in enumerate(zip(values, instants, strict=True)):
        made.append(
            LedgerEntry(
                project_id=long_ledger.pk,
                seq=top + 1 + i,
                annotator_id=annotator.pk,
                kind=LedgerEntry.Kind.ADJUSTMENT if i % 2 else LedgerEntry.Kind.REVERSAL,
                reversed_kind=LedgerEntry.Kind.PIECE_PAY if i % 2 == 0 else "",
                time_category="",
                reverses_id=reverses,
                policy_id=None if i % 3 else first.policy_id,
                active_seconds=seconds,
                wall_seconds=-seconds,
                counted_seconds=abs(seconds),
                units=-1 if i % 2 else 32767,
                amount=amount,
                currency="EUR" if i % 2 else "USD",
                floor_amount=-amount,
                client_amount=amount / 2 if abs(amount) < 1000 else Decimal("0.25"),
                occurred_at=moment,
                period_start=moment.date(),
                acting_user_id=admin_user.pk if i % 2 else None,
                reason=reason,
                idempotency_key=f"varied-{i}-ключ",
                prev_hash="p" * 64,
                created_at=instants[-1 - i],
                hash_version=chain.HASH_V3,
                mac_key_id="0123456789abcdef",
                mac="m" * 64,
                entry_hash=f"{i:064d}",
            )
        )
    for e in made:
        e.client_amount = e.client_amount.quantize(Decimal("0.000001"))
    LedgerEntry.objects.bulk_create(made)
    with connection.cursor() as cur:
        cur.execute("SHOW server_encoding")
        assert cur.fetchone()[0] == "UTF8"  # so COMPACT_SQL_UTF8, what verification reads here, is held too
        cur.execute(
            f"SELECT seq, {chain.COMPACT_SQL}, {chain.COMPACT_SQL_UTF8} FROM labor_ledger_ledgerentry "  # noqa: S608
            "WHERE project_id = %s",
            [long_ledger.pk],
        )
        rows = cur.fetchall()
    from_sql = {seq: bytes(enc) for seq, enc, _ in rows}
    assert {seq: bytes(enc) for seq, _, enc in rows} == from_sql
    stored = {e.seq: e for e in LedgerEntry.objects.filter(project=long_ledger)}
    for e in made:  # as written (the Decimals as given) and as read back
        assert from_sql[e.seq] == chain.compact(e) == chain.compact(stored[e.seq]), e.seq
    for seq, e in stored.items():  # and the ledger's own entries
        assert from_sql[seq] == chain.compact(e), seq
