"""Verifying a project's ledger fast (issue 18, item 2) and against its signed checkpoints
(issue 15, item 7). Reads only.

- The chains. v3 entries (chain.py) are read as the compact bytes PostgreSQL computes from the
  row (chain.COMPACT_SQL, or COMPACT_SQL_UTF8 in a UTF8 database) through a server-side cursor,
  in chunks fetched one ahead in a thread; per entry Python does one SHA-256 and one HMAC, no
  Decimal, datetime or JSON. A chunk of v3 entries under one key is checked as a batch (the
  hashing mapped over hashlib in C, list comparisons); a chunk that is not wholly right, or holds
  other versions, is checked entry by entry, which names the problems. Entries of earlier hash
  versions (v1, v2) are fetched whole and verify under their own version, as before.
  PostgreSQL's encoding is the bound (BENCHMARKS-ledger.md).
- Every entry is checked against the stored hash and MAC of the one before it, so disjoint
  seq ranges verify independently: verify_ledger runs ranges (and projects) in parallel processes.
- Balances, settlements and reversals are checked with aggregates in the same REPEATABLE READ
  snapshot as the chain (on PostgreSQL).
- Checkpoints (checkpoints.py): the latest one whose signature verifies, from the database or
  the witness file, must still be reached by the chain with the same MAC at its seq; otherwise
  the ledger was truncated or rolled back. `since` (a verified checkpoint) makes the check
  incremental: only the entries after it are re-hashed.

Problems are reported in seq order, so the first one names the first bad entry.
"""

import hashlib
import hmac
import queue
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum

from annotation.models import Project

from . import chain, checkpoints
from .models import Balance, ChainHead, LedgerCheckpoint, LedgerEntry, Settlement

Kind = LedgerEntry.Kind
MAX_PROBLEMS = 200
CHUNK = 5_000
MIN_SPLIT = 50_000  # a chain shorter than this is checked in one range
TABLE = LedgerEntry._meta.db_table
_LEGACY_FIELDS = (*chain.HASHED_ATTRIBUTES, "entry_hash", "mac", "mac_key_id")


@dataclass
class Verification:
    project: Project
    entries: int = 0
    head_seq: int = 0
    head_hash: str = chain.GENESIS
    head_mac: str = ""
    problems: list[str] = field(default_factory=list)
    # What was checked besides: the checkpoint the chain was held to, where the chain check
    # resumed (0: from the start), and plain notes (e.g. that nothing is signed).
    checkpoint: checkpoints.Checkpoint | None = None
    resumed_after: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class ChainPart:
    """The chain check of entries first..last (last None: to the end)."""

    project_id: int
    first: int
    last: int | None
    prev_hash: str
    prev_link: str
    legacy_seq: int
    legacy_seal: str
    entries: int = 0
    end_seq: int = 0
    end_hash: str = chain.GENESIS
    end_link: str = chain.GENESIS
    problems: list[tuple[int, str]] = field(default_factory=list)
    batched: int = 0  # of `entries`, those the batch check accepted (the rest: entry by entry)


def _compact_select(*, utf8_database: bool = False) -> str:
    encoding = chain.COMPACT_SQL_UTF8 if utf8_database else chain.COMPACT_SQL
    return (
        f"SELECT seq, hash_version, prev_hash, entry_hash, mac, mac_key_id, "  # noqa: S608 - constants
        f"CASE WHEN hash_version = {chain.HASH_V3} THEN {encoding} END "
        f"FROM {TABLE} WHERE project_id = %s AND seq >= %s AND seq <= %s ORDER BY seq"
    )


def _rows(part: ChainPart, chunk: int):
    """Chunks of (seq, hash_version, prev_hash, entry_hash, mac, kid, compact) in seq order,
    from a server-side cursor on PostgreSQL."""
    last = part.last if part.last is not None else 2**63 - 1
    params = [part.project_id, part.first, last]
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        utf8 = connection.connection.info.parameter_status("server_encoding") == "UTF8"
        with connection.connection.cursor(name=f"ledger_verify_{part.project_id}_{part.first}") as cur:
            cur.itersize = chunk
            cur.execute(_compact_select(utf8_database=utf8), params, binary=True)  # bytea as bytes, no hex text
            yield from _prefetched(cur, chunk)
        return
    # other databases (SQLite, the demo): the compact bytes from the rows, in Python
    qs = (
        LedgerEntry.objects.filter(project_id=part.project_id, seq__gte=part.first, seq__lte=last)
        .order_by("seq")
        .values_list(*_LEGACY_FIELDS, named=True)
    )
    batch = []
    for e in qs.iterator(chunk_size=chunk):
        enc = chain.compact(e) if e.hash_version == chain.HASH_V3 else None
        batch.append((e.seq, e.hash_version, e.prev_hash, e.entry_hash, e.mac, e.mac_key_id, enc))
        if len(batch) >= chunk:
            yield batch
            batch = []
    if batch:
        yield batch


def _prefetched(cur, chunk: int):
    """The cursor's chunks, fetched one ahead in a thread: PostgreSQL encodes and sends the
    next chunk (the thread waits on the socket without the GIL) while this one is hashed."""
    ready: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce():
        try:
            while not stop.is_set() and (rows := cur.fetchmany(chunk)):
                ready.put(rows)
            ready.put(None)
        except BaseException as exc:  # handed to the consumer
            ready.put(exc)

    worker = threading.Thread(target=produce, name="ledger-verify-fetch", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()


def verify_chain(part: ChainPart, *, chunk: int = CHUNK, fast: bool = True) -> ChainPart:
    """Check the hash chain and the MAC chain of one seq range; fills part's results.

    Each chunk of rows is first checked as a batch (_batch_ok: the common case of v3 entries under
    one key, with the per-entry work in C: map over hashlib, list comparisons). A batch that is not
    wholly right, or not of that kind, is checked entry by entry (_check_rows, the reference), which
    names the problems; so what is reported does not depend on the batch check. `fast=False` checks
    every chunk entry by entry (the tests compare the two)."""
    try:
        keys = chain.keys_by_id()
    except chain.UnknownKey as exc:
        part.problems.append((part.first, str(exc)))
        return part
    check = _Checker(part, keys)
    for rows in _rows(part, chunk):
        if not (fast and check.batch_ok(rows)):
            check.rows(rows)
        if len(part.problems) > MAX_PROBLEMS:
            break
    part.batched = check.batched
    part.entries, part.end_seq, part.end_hash, part.end_link = (
        check.count,
        check.expected - 1,
        check.prev_hash,
        check.prev_link,
    )
    return part


class _Checker:
    """The chain state through one seq range: the next seq expected, the hash and the MAC link
    of the entry before it, and how many entries were checked."""

    def __init__(self, part: ChainPart, keys: dict[str, bytes]):
        self.part, self.keys = part, keys
        self.expected, self.prev_hash, self.prev_link, self.count = part.first, part.prev_hash, part.prev_link, 0
        self.prefixes = {kid: chain.mac_v3_prefix(kid) for kid in keys}
        self.hmacs = {kid: _BatchHmac(key, self.prefixes[kid]) for kid, key in keys.items()}
        self.batched = 0  # entries accepted by batch_ok (the tests look)

    def batch_ok(self, rows) -> bool:
        """True, with the state advanced past `rows`, when every row is a v3 entry under one
        configured key whose seq, prev_hash, hash and MAC are exactly what the entry-by-entry
        check requires; False (state untouched) otherwise, including any doubt."""
        n = len(rows)
        if not n:
            return True
        seqs, versions, prevs, hashes, macs, kids, encs = zip(*rows, strict=True)
        first = self.expected
        kid = kids[0]
        if (
            seqs != tuple(range(first, first + n))
            or versions.count(chain.HASH_V3) != n
            or kids.count(kid) != n
            or kid not in self.hmacs
            or first <= self.part.legacy_seq < first + n  # the legacy seal: checked entry by entry
            or prevs[0] != self.prev_hash
            or prevs[1:] != hashes[:-1]
        ):
            return False
        if list(map(_hexdigest, map(_sha256, encs))) != list(hashes):
            return False
        links = (self.prev_link, *macs[:-1])
        if self.hmacs[kid].hexdigests(map("\0".join, zip(links, hashes, strict=True))) != list(macs):
            return False
        self.expected, self.prev_hash, self.prev_link = first + n, hashes[-1], macs[-1]
        self.count += n
        self.batched += n
        return True

    def rows(self, rows) -> None:
        """The reference check, entry by entry, naming each problem."""
        part, keys, prefixes, problems = self.part, self.keys, self.prefixes, self.part.problems
        sha256, hmac_digest = hashlib.sha256, hmac.digest
        expected, prev_hash, prev_link, legacy_seq = self.expected, self.prev_hash, self.prev_link, part.legacy_seq
        legacy = {}
        if any(r[1] != chain.HASH_V3 for r in rows):
            seqs = [r[0] for r in rows if r[1] != chain.HASH_V3]
            legacy = {
                e.seq: e
                for e in LedgerEntry.objects.filter(project_id=part.project_id, seq__in=seqs).values_list(
                    *_LEGACY_FIELDS, named=True
                )
            }
        for seq, version, row_prev, row_hash, mac, kid, enc in rows:
            if seq != expected:
                problems.append((seq, f"entry #{seq}: expected #{expected} next (a gap or a fork in the chain)"))
            if row_prev != prev_hash:
                problems.append((seq, f"entry #{seq}: prev_hash does not match the hash of the entry before it"))
            if version == chain.HASH_V3:
                digest = sha256(enc).hexdigest()
                if digest != row_hash:
                    problems.append(
                        (seq, f"entry #{seq}: its contents do not match its hash (changed after it was written)")
                    )
                key = keys.get(kid)
                if key is None:
                    problems.append((seq, f"entry #{seq}: the ledger MAC key {kid!r} is not configured"))
                # not a secret comparison: whoever runs the verification sees the result anyway
                elif (
                    hmac_digest(key, prefixes[kid] + prev_link.encode() + b"\0" + digest.encode(), "sha256").hex()
                    != mac
                ):
                    problems.append(
                        (
                            seq,
                            f"entry #{seq}: its MAC does not verify "
                            "(written or changed by someone without the ledger key)",
                        )
                    )
            else:
                _check_legacy(legacy[seq], part, prev_link, problems)
            if seq == legacy_seq and not chain.legacy_seal_ok(part.legacy_seal, part.project_id, seq, row_hash):
                problems.append(
                    (seq, f"entry #{seq}: the unkeyed entries up to here do not match the chain head's seal")
                )
            prev_hash, expected = row_hash, seq + 1
            prev_link = mac if version in (chain.HASH_V2, chain.HASH_V3) else row_hash
            self.count += 1
        self.expected, self.prev_hash, self.prev_link = expected, prev_hash, prev_link


_sha256 = hashlib.sha256
_hexdigest = type(hashlib.sha256()).hexdigest
_digest = type(hashlib.sha256()).digest


class _BatchHmac:
    """HMAC-SHA256(key, prefix + message) of many messages, each pass a C-level map over hashlib
    (RFC 2104 spelled out: H(key ^ opad, H(key ^ ipad, prefix + message))); hmac.digest per
    message looks the digest up again each call and costs 3x more. Same bytes as hmac.digest:
    a test holds them together."""

    def __init__(self, key: bytes, prefix: bytes):
        block = 64  # SHA-256's block size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self.inner = bytes(b ^ 0x36 for b in key) + prefix
        self.outer = bytes(b ^ 0x5C for b in key)

    def hexdigests(self, messages) -> list[str]:
        """The hex MACs of `messages` (str, UTF-8 encoded)."""
        inner = map(_digest, map(_sha256, map(self.inner.__add__, map(str.encode, messages))))
        return list(map(_hexdigest, map(_sha256, map(self.outer.__add__, inner))))


def _check_legacy(entry, part: ChainPart, prev_link: str, problems: list) -> None:
    seq = entry.seq
    if chain.entry_hash(entry) != entry.entry_hash:
        problems.append((seq, f"entry #{seq}: its contents do not match its hash (changed after it was written)"))
    if entry.hash_version == chain.HASH_V2:
        try:
            if not chain.mac_ok(entry, prev_link=prev_link):
                problems.append(
                    (
                        seq,
                        f"entry #{seq}: its MAC does not verify (written or changed by someone without the ledger key)",
                    )
                )
        except chain.UnknownKey as exc:
            problems.append((seq, f"entry #{seq}: {exc}"))
    elif entry.hash_version == chain.HASH_V1:
        if seq > part.legacy_seq:
            problems.append(
                (
                    seq,
                    f"entry #{seq}: an unkeyed entry after the ledger key was introduced "
                    "(appended by someone without the key)",
                )
            )
    else:
        problems.append((seq, f"entry #{seq}: unknown hash version {entry.hash_version}"))


# --- checkpoints -------------------------------------------------------------------------------


def candidate_checkpoints(project: Project) -> list[checkpoints.Checkpoint]:
    """The project's checkpoints from the database and the witness file, newest seq first."""
    rows = [checkpoints.from_row(r) for r in LedgerCheckpoint.objects.filter(project=project)]
    found = rows + checkpoints.witness_checkpoints(project.pk)
    return sorted(found, key=lambda c: (c.seq, c.created_at), reverse=True)


def resume_point(project: Project) -> checkpoints.Checkpoint | None:
    """The latest `verified` checkpoint whose signature verifies (incremental verification)."""
    keys = checkpoints.public_keys()
    for cp in candidate_checkpoints(project):
        if cp.reason == checkpoints.Reason.VERIFIED and checkpoints.signature_ok(cp, keys):
            return cp
    return None


def _entry_at(project: Project, seq: int):
    return LedgerEntry.objects.filter(project=project, seq=seq).values_list("entry_hash", "mac").first()


def check_checkpoints(project: Project, head_seq: int, problem, notes: list[str]) -> checkpoints.Checkpoint | None:
    """Hold the chain to its latest validly signed checkpoint; report bad signatures newer than it."""
    keys = checkpoints.public_keys()
    if not keys:
        notes.append(checkpoints.NOT_SIGNED)
        return None
    for cp in candidate_checkpoints(project):
        valid = checkpoints.signature_ok(cp, keys)
        if valid is None:
            notes.append(f"checkpoint at #{cp.seq} ({cp.source}): signed with key {cp.key_id}, not configured here")
            continue
        if not valid:
            problem(
                cp.seq,
                f"checkpoint at #{cp.seq} of {cp.created_at.isoformat()} ({cp.source}): its signature does not verify "
                "(written or changed by someone without the signing key)",
            )
            continue
        at = f"the checkpoint signed at {cp.created_at.isoformat()} (#{cp.seq}, key {cp.key_id}, {cp.source})"
        if head_seq < cp.seq:
            problem(
                head_seq + 1,
                f"entry #{head_seq + 1}: missing; the ledger ends at #{head_seq} but {at} covers it "
                "(the ledger was truncated or rolled back)",
            )
        elif _entry_at(project, cp.seq) != (cp.entry_hash, cp.mac):
            problem(
                cp.seq,
                f"entry #{cp.seq}: differs from {at} (the ledger was rolled back or rewritten)",
            )
        return cp
    notes.append("no signed checkpoint yet: a truncation or rollback of this ledger cannot be detected")
    return None


# --- the whole verification --------------------------------------------------------------------


class _snapshot:  # noqa: N801 - a context manager used like a function
    """One REPEATABLE READ transaction on PostgreSQL (a savepoint inside an outer one)."""

    def __enter__(self):
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        if connection.vendor == "postgresql" and len(connection.savepoint_ids) == 0:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return self

    def __exit__(self, *exc):
        return self._atomic.__exit__(*exc)


def plan(project: Project, *, since: checkpoints.Checkpoint | None = None, parts: int = 1) -> list[ChainPart]:
    """Split the chain check into `parts` seq ranges, each starting from the stored hash and MAC
    of the entry before it (which the range before checks)."""
    head = ChainHead.objects.filter(project=project).first()
    legacy_seq, seal = (head.legacy_seq, head.legacy_seal) if head else (0, "")
    first, prev_hash, prev_link = 1, chain.GENESIS, chain.GENESIS
    if since is not None:
        first, prev_hash, prev_link = since.seq + 1, since.entry_hash, since.mac or since.entry_hash
    top = LedgerEntry.objects.filter(project=project).order_by("-seq").values_list("seq", flat=True).first() or 0
    bounds = [first]
    if parts > 1 and top - first > MIN_SPLIT:
        step = (top - first + 1) // parts
        bounds += [first + step * i for i in range(1, parts)]
    result = []
    for i, start in enumerate(bounds):
        end = bounds[i + 1] - 1 if i + 1 < len(bounds) else None
        if i:
            before = (
                LedgerEntry.objects.filter(project=project, seq=start - 1)
                .values_list("entry_hash", "mac", "hash_version")
                .first()
            )
            if before is None:  # a gap: let the range that should hold it report it
                before = (chain.GENESIS, "", chain.HASH_V1)
            prev_hash = before[0]
            prev_link = before[1] if before[2] in (chain.HASH_V2, chain.HASH_V3) else before[0]
        result.append(ChainPart(project.pk, start, end, prev_hash, prev_link, legacy_seq, seal))
    return result


def verify_project(
    *, project: Project, since: checkpoints.Checkpoint | None = None, run_parts=None, parts: int = 1
) -> Verification:
    """Verify one project's ledger: the chains (from `since`, a verified checkpoint, when given),
    the latest signed checkpoint, balances, settlements and reversals. `run_parts` runs the chain
    parts (verify_ledger passes a process pool); by default they run here, in order."""
    result = Verification(project=project)
    listed: list[tuple[int, str]] = []
    later: list[str] = []

    def problem(seq: int, text: str) -> None:
        listed.append((seq, text))

    with _snapshot():
        head = ChainHead.objects.filter(project=project).first()
        if since is not None and _entry_at(project, since.seq) != (since.entry_hash, since.mac):
            problem(since.seq, f"entry #{since.seq}: differs from the verified checkpoint it resumes from")
            since = None
        chain_parts = plan(project, since=since, parts=parts)
        done = run_parts(chain_parts) if run_parts else [verify_chain(p) for p in chain_parts]
        for part in done:
            listed.extend(part.problems)
            result.entries += part.entries
        end = done[-1]
        if end.entries:
            result.head_seq, result.head_hash, result.head_mac = end.end_seq, end.end_hash, end.end_link
        elif since is not None:
            result.head_seq, result.head_hash, result.head_mac = since.seq, since.entry_hash, since.mac
        result.resumed_after = since.seq if since is not None else 0
        if since is not None:
            result.entries += since.seq

        legacy_seq = head.legacy_seq if head is not None else 0
        if legacy_seq > result.head_seq:
            later.append(f"the chain head's seal covers #{legacy_seq}, but the entries end at #{result.head_seq}")
        if head is not None and (head.seq, head.last_hash) != (result.head_seq, result.head_hash):
            later.append(
                f"chain head says #{head.seq} {head.last_hash[:12]}, "
                f"the entries end at #{result.head_seq} {result.head_hash[:12]}"
            )
        if head is None and result.entries:
            later.append("the project has entries but no chain head")
        result.checkpoint = check_checkpoints(project, result.head_seq, problem, result.notes)
        entries = LedgerEntry.objects.filter(project=project)
        _check_books(project, entries, later, problem, after=result.resumed_after)

    listed.sort(key=lambda p: p[0])  # stable: per entry, in the order found
    result.problems = [text for _, text in listed] + later
    if len(result.problems) > MAX_PROBLEMS:
        result.problems = result.problems[:MAX_PROBLEMS] + ["... more problems not listed"]
    return result


def _check_books(project: Project, entries, later: list[str], problem, *, after: int = 0) -> None:
    """Balances, settlements, currencies and reversals against the entries: one aggregate by
    annotator, period and currency (one scan), and the reversals in SQL (those after `after`
    only, when resuming from a verified checkpoint: the earlier ones were checked then)."""
    sums: dict[int, list] = defaultdict(lambda: [Decimal(0), 0])
    by_period: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
    other_currency = False
    grouped = (
        entries.order_by()
        .values("annotator_id", "period_start", "currency")
        .annotate(s=Sum("amount"), n=Count("id"))
        .values_list("annotator_id", "period_start", "currency", "s", "n")
    )
    for annotator_id, period, currency, total, count in grouped:
        sums[annotator_id][0] += total
        sums[annotator_id][1] += count
        by_period[(annotator_id, period)] += total
        other_currency |= currency != project.currency
    if other_currency:
        wrong = entries.exclude(currency=project.currency).order_by("seq").values_list("seq", flat=True)
        for seq in wrong[:MAX_PROBLEMS]:
            problem(seq, f"entry #{seq}: currency differs from the project's {project.currency}")
    stored = {b.annotator_id: b for b in Balance.objects.filter(project=project)}
    for annotator_id in sorted(set(stored) | set(sums)):
        b = stored.get(annotator_id)
        total, count = sums[annotator_id] if annotator_id in sums else (Decimal(0), 0)
        if b is None:
            later.append(f"annotator {annotator_id}: entries sum to {total} but there is no balance row")
        elif b.amount != total or b.entry_count != count:
            later.append(
                f"annotator {annotator_id}: balance {b.amount} over {b.entry_count} entries, "
                f"the entries sum to {total} over {count}"
            )
    for s in Settlement.objects.filter(project=project).order_by("period", "annotator_id"):
        booked = by_period.get((s.annotator_id, s.period), Decimal(0))
        if booked != s.payable:
            later.append(
                f"settlement {s.period} of annotator {s.annotator_id}: payable {s.payable}, entries sum to {booked}"
            )
        if s.gross + s.top_up + s.rounding != s.payable:
            later.append(f"settlement {s.period} of annotator {s.annotator_id}: gross + top-up + rounding != payable")
        if s.payable < s.floor_target:
            later.append(
                f"settlement {s.period} of annotator {s.annotator_id}: "
                f"payable {s.payable} below the floor {s.floor_target}"
            )
    reversals = entries.filter(kind=Kind.REVERSAL, seq__gt=after)
    for seq in reversals.filter(reverses__isnull=True).values_list("seq", flat=True)[:MAX_PROBLEMS]:
        later.append(f"entry #{seq}: a reversal that reverses nothing")
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
        later.append(f"entry #{seq}: a reversal that does not mirror the entry it reverses")
