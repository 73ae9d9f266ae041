"""The hash chain: a canonical serialization of an entry and its SHA-256.

entry_hash = sha256(canonical JSON of the entry's fields, prev_hash included). The JSON has
sorted keys, no whitespace, ids as integers (or null), amounts as strings with 6 decimal
places, seconds with 3, datetimes in UTC ISO 8601 with microseconds. The chain of a project
starts from GENESIS; each entry names the hash of the one before it (by seq).
"""

import hashlib
import json
from datetime import UTC, datetime

from .money import fmt_amount, fmt_seconds

GENESIS = "0" * 64
CANONICAL_VERSION = 1
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
