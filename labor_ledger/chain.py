"""The hash chain: a canonical serialization of an entry and its SHA-256; and the keyed MAC chain.

entry_hash = sha256(canonical JSON of the entry's fields, prev_hash included). The JSON has
sorted keys, no whitespace, ids as integers (or null), amounts as strings with 6 decimal
places, seconds with 3, datetimes in UTC ISO 8601 with microseconds. The chain of a project
starts from GENESIS; each entry names the hash of the one before it (by seq).

The hash alone proves nothing to someone who can write the table: anyone can re-hash. So each
entry also carries a keyed MAC (hash_version 2, issue 15):

    mac = HMAC-SHA256(key[mac_key_id], "tally-ledger-mac\0v2\0" kid \0 prev_link \0 canonical)

where prev_link is the previous entry's MAC (or, for the first keyed entry of a chain, the
previous entry's hash; GENESIS for the first entry). The key comes from the environment or a
secrets file (settings.TALLY_LEDGER_MAC_KEY, TALLY_LEDGER_MAC_OLD_KEYS), never the database;
its id is a digest of the key, so keys can rotate and old entries still verify. Entries written
before the MAC existed (hash_version 1) verify by their hash, and only up to the chain head's
legacy seal: a MAC over (project, seq, hash) of the last of them, written when the key was
introduced (migration 0007). An unkeyed entry after it is a forgery.

hash_version 3 (issue 18): the same two chains over a compact canonical byte encoding instead
of JSON, so that verification hashes rows without building a dict per entry:

    compact     = fixed-order big-endian fields (see compact() and COMPACT_SQL, which
                  PostgreSQL evaluates to the same bytes)
    entry_hash  = sha256(compact)                      # compact holds prev_hash
    mac         = HMAC-SHA256(key[kid], "tally-ledger-mac\0v3\0" kid \0 prev_link \0 entry_hash)

New entries are written as v3 (seal()); v1 and v2 entries keep verifying under their version.
"""

import hashlib
import hmac
import json
import struct
from datetime import UTC, date, datetime

from django.conf import settings

from .money import fmt_amount, fmt_seconds

GENESIS = "0" * 64
CANONICAL_VERSION = 1
HASH_V1 = 1  # the SHA-256 chain only: entries written before the ledger had a key
HASH_V2 = 2  # the SHA-256 chain and the keyed MAC chain
HASH_V3 = 3  # both chains over the compact byte encoding (issue 18); what appends write now
# The entry attributes canonical() reads: what anything that re-hashes entries must fetch.
HASHED_ATTRIBUTES = (
    "seq",
    "project_id",
    "annotator_id",
    "kind",
    "reversed_kind",
    "time_category",
    "attempt_id",
    "annotation_id",
    "reading_id",
    "reverses_id",
    "policy_id",
    "active_seconds",
    "wall_seconds",
    "counted_seconds",
    "units",
    "amount",
    "currency",
    "floor_amount",
    "client_amount",
    "occurred_at",
    "period_start",
    "acting_user_id",
    "reason",
    "idempotency_key",
    "created_at",
    "prev_hash",
    "hash_version",
)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(entry) -> bytes:
    data = {
        "v": CANONICAL_VERSION,
        "seq": entry.seq,
        "project": entry.project_id,
        "annotator": entry.annotator_id,
        "kind": entry.kind,
        "reversed_kind": entry.reversed_kind,
        "time_category": entry.time_category,
        "attempt": entry.attempt_id,
        "annotation": entry.annotation_id,
        "reading": entry.reading_id,
        "reverses": entry.reverses_id,
        "policy": entry.policy_id,
        "active_seconds": fmt_seconds(entry.active_seconds),
        "wall_seconds": fmt_seconds(entry.wall_seconds),
        "counted_seconds": fmt_seconds(entry.counted_seconds),
        "units": entry.units,
        "amount": fmt_amount(entry.amount),
        "currency": entry.currency,
        "floor_amount": fmt_amount(entry.floor_amount),
        "client_amount": fmt_amount(entry.client_amount),
        "occurred_at": _iso(entry.occurred_at),
        "period_start": entry.period_start.isoformat(),
        "acting_user": entry.acting_user_id,
        "reason": entry.reason,
        "idempotency_key": entry.idempotency_key,
        "created_at": _iso(entry.created_at),
        "prev_hash": entry.prev_hash,
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry) -> str:
    """The entry's SHA-256 under its hash_version (v1 and v2: canonical JSON; v3: compact bytes)."""
    if getattr(entry, "hash_version", HASH_V1) == HASH_V3:
        return hashlib.sha256(compact(entry)).hexdigest()
    return hashlib.sha256(canonical(entry)).hexdigest()


# --- v3: the compact canonical encoding ----------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_Q = struct.Struct(">q")
_HEAD = struct.Struct(">qqq")
_IDS = struct.Struct(">qqqqq")
_NUMBERS = struct.Struct(">qqqqq")
_TAIL = struct.Struct(">qqqqiq")
_MICRO = 1_000_000


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def _id(value) -> int:
    return -1 if value is None else value


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * _MICRO + delta.microseconds


def compact(entry) -> bytes:
    """The v3 canonical bytes of an entry: integers as 8-byte big-endian (ids -1 when null,
    amounts in millionths, seconds in thousandths, instants in microseconds since 1970 UTC),
    the period as 4-byte days since 1970, text as a 4-byte length and UTF-8. COMPACT_SQL
    computes the same bytes in PostgreSQL; a test holds the two together."""
    return b"".join(
        (
            b"TL3",
            _HEAD.pack(entry.seq, entry.project_id, entry.annotator_id),
            _text(entry.kind),
            _text(entry.reversed_kind),
            _text(entry.time_category),
            _IDS.pack(
                _id(entry.attempt_id),
                _id(entry.annotation_id),
                _id(entry.reading_id),
                _id(entry.reverses_id),
                _id(entry.policy_id),
            ),
            _NUMBERS.pack(
                int(entry.active_seconds * 1000),
                int(entry.wall_seconds * 1000),
                int(entry.counted_seconds * 1000),
                entry.units,
                int(entry.amount * _MICRO),
            ),
            _text(entry.currency),
            _TAIL.pack(
                int(entry.floor_amount * _MICRO),
                int(entry.client_amount * _MICRO),
                _micros(entry.occurred_at),
                _micros(entry.created_at),
                entry.period_start.toordinal() - _EPOCH_DAY,
                _id(entry.acting_user_id),
            ),
            _text(entry.reason),
            _text(entry.idempotency_key),
            _text(entry.prev_hash),
        )
    )


def _sql_text(column: str, *, utf8_database: bool = False) -> str:
    # In a UTF8 database octet_length is the length of the UTF-8 bytes: one conversion fewer
    # per text field (about a sixth of PostgreSQL's encoding time, measured on the bench).
    length = f"octet_length({column})" if utf8_database else f"length(convert_to({column}, 'UTF8'))"
    return f"int4send({length}) || convert_to({column}, 'UTF8')"


def _sql_int(expression: str) -> str:
    return f"int8send(({expression})::int8)"


def _compact_sql(*, utf8_database: bool) -> str:
    def text(column: str) -> str:
        return _sql_text(column, utf8_database=utf8_database)

    return " || ".join(
        (
            "'\\x544c33'::bytea",
            _sql_int("seq"),
            _sql_int("project_id"),
            _sql_int("annotator_id"),
            text("kind"),
            text("reversed_kind"),
            text("time_category"),
            *(_sql_int(f"coalesce({c}, -1)") for c in ("attempt_id", "annotation_id", "reading_id", "reverses_id")),
            _sql_int("coalesce(policy_id, -1)"),
            _sql_int("active_seconds * 1000"),
            _sql_int("wall_seconds * 1000"),
            _sql_int("counted_seconds * 1000"),
            _sql_int("units"),
            _sql_int("amount * 1000000"),
            text("currency"),
            _sql_int("floor_amount * 1000000"),
            _sql_int("client_amount * 1000000"),
            _sql_int("extract(epoch FROM occurred_at) * 1000000"),
            _sql_int("extract(epoch FROM created_at) * 1000000"),
            "int4send(period_start - DATE '1970-01-01')",
            _sql_int("coalesce(acting_user_id, -1)"),
            text("reason"),
            text("idempotency_key"),
            text("prev_hash"),
        )
    )


# The same bytes as compact(), computed by PostgreSQL over a row of labor_ledger_ledgerentry
# (columns unqualified). Verification reads these instead of the columns: no Decimal, datetime
# or dict per entry on the Python side. COMPACT_SQL_UTF8 gives the same bytes in a database
# whose server_encoding is UTF8 (only there), a little faster; a test holds both to compact().
COMPACT_SQL = _compact_sql(utf8_database=False)
COMPACT_SQL_UTF8 = _compact_sql(utf8_database=True)


# --- the keyed MAC chain -----------------------------------------------------------------------


class UnknownKey(LookupError):
    pass


def key_id(key: str) -> str:
    return hashlib.sha256(b"tally-ledger-mac-key-id\0" + key.encode()).hexdigest()[:16]


def _keys() -> tuple[str, dict[str, bytes]]:
    """(the current key's id, every configured key by id)."""
    current = settings.TALLY_LEDGER_MAC_KEY
    if not current:
        raise UnknownKey("TALLY_LEDGER_MAC_KEY is not set: the ledger cannot be written or verified.")
    keys = {key_id(k): k.encode() for k in (*settings.TALLY_LEDGER_MAC_OLD_KEYS, current) if k}
    return key_id(current), keys


def _mac(kid: str, message: bytes) -> str:
    key = _keys()[1].get(kid)
    if key is None:
        raise UnknownKey(f"the ledger MAC key {kid!r} is not configured")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def entry_mac(entry, *, prev_link: str, kid: str) -> str:
    message = b"tally-ledger-mac\0v2\0" + kid.encode() + b"\0" + prev_link.encode() + b"\0" + canonical(entry)
    return _mac(kid, message)


def sign(entry, *, prev_link: str) -> str:
    """Make `entry` a keyed (v2) entry after `prev_link`; returns its MAC (the next link)."""
    kid = _keys()[0]
    entry.hash_version, entry.mac_key_id = HASH_V2, kid
    entry.mac = entry_mac(entry, prev_link=prev_link, kid=kid)
    return entry.mac


def mac_ok(entry, *, prev_link: str) -> bool:
    if entry.hash_version == HASH_V3:
        expected = mac_v3(entry.entry_hash, prev_link=prev_link, kid=entry.mac_key_id)
    else:
        expected = entry_mac(entry, prev_link=prev_link, kid=entry.mac_key_id)
    return hmac.compare_digest(expected, entry.mac)


def mac_v3_prefix(kid: str) -> bytes:
    return b"tally-ledger-mac\0v3\0" + kid.encode() + b"\0"


def mac_v3(hash_hex: str, *, prev_link: str, kid: str) -> str:
    return _mac(kid, mac_v3_prefix(kid) + prev_link.encode() + b"\0" + hash_hex.encode())


def seal(entry, *, prev_link: str) -> str:
    """Make `entry` a v3 entry after `prev_link`: its hash over the compact encoding and its
    MAC with the current key. Returns the MAC (the next link)."""
    kid = _keys()[0]
    entry.hash_version, entry.mac_key_id = HASH_V3, kid
    entry.entry_hash = entry_hash(entry)
    entry.mac = mac_v3(entry.entry_hash, prev_link=prev_link, kid=kid)
    return entry.mac


def keys_by_id() -> dict[str, bytes]:
    """Every configured MAC key by its id (for verification)."""
    return _keys()[1]


def link(entry) -> str:
    """What the next entry's MAC chains to: this entry's MAC, or its hash if it has none (v1)."""
    return entry.mac if entry.hash_version in (HASH_V2, HASH_V3) else entry.entry_hash


def legacy_seal(project_id: int, seq: int, last_hash: str, kid: str | None = None) -> str:
    """The chain head's seal over the unkeyed prefix: `kid:mac` of (project, seq, hash of #seq)."""
    kid = kid or _keys()[0]
    message = f"tally-ledger-legacy\0{project_id}\0{seq}\0{last_hash}".encode()
    return f"{kid}:{_mac(kid, message)}"


def legacy_seal_ok(seal: str, project_id: int, seq: int, last_hash: str) -> bool:
    kid, _, _ = seal.partition(":")
    try:
        return hmac.compare_digest(legacy_seal(project_id, seq, last_hash, kid), seal)
    except UnknownKey:
        return False
