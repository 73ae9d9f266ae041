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
"""

import hashlib
import hmac
import json
from datetime import UTC, datetime

from django.conf import settings

from .money import fmt_amount, fmt_seconds

GENESIS = "0" * 64
CANONICAL_VERSION = 1
HASH_V1 = 1  # the SHA-256 chain only: entries written before the ledger had a key
HASH_V2 = 2  # the SHA-256 chain and the keyed MAC chain
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
    return hashlib.sha256(canonical(entry)).hexdigest()


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
    return hmac.compare_digest(entry_mac(entry, prev_link=prev_link, kid=entry.mac_key_id), entry.mac)


def link(entry) -> str:
    """What the next entry's MAC chains to: this entry's MAC, or its hash if it has none (v1)."""
    return entry.mac if entry.hash_version == HASH_V2 else entry.entry_hash


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
