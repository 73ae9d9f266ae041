"""Signed checkpoints of each project's chain head (issue 15, item 7).

The keyed MAC chain (chain.py) catches every entry written or rewritten without the ledger key,
but not a chain that was cut short: deleting the newest entries (or restoring an older backup)
leaves a shorter chain whose every MAC is genuine. A checkpoint pins the head:

    message   = "tally-ledger-checkpoint\\0" + canonical JSON of
                {v, project, seq, entry_hash, mac, reason, at, key_id}
    signature = Ed25519(signing key, message)

written at settlement, on a schedule (the beat task `labor_ledger.checkpoint_heads`) and after a
verification that passed (the point the next incremental verification resumes from). Each is a
row of LedgerCheckpoint and a line of `ledger-checkpoints.jsonl` in TALLY_CHECKPOINT_DIR, a place
outside the database for an outside witness. verify_ledger checks the latest ones
(verification.py): a valid signature, the chain reaching at least the checkpoint's seq, and the
entry there holding the checkpointed MAC.

The signing key comes from the environment or a secrets file (TALLY_CHECKPOINT_SIGNING_KEY,
_FILE), never the database; there is no default: without one nothing is signed and
verify_ledger says so. Only public keys from the settings are trusted to verify (the current
key's and TALLY_CHECKPOINT_OLD_PUBLIC_KEYS), never one read from the database or the file.
"""

import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.utils import timezone

from annotation.models import Project

from .models import ChainHead, LedgerCheckpoint, LedgerEntry

logger = logging.getLogger(__name__)
Reason = LedgerCheckpoint.Reason
WITNESS_FILE = "ledger-checkpoints.jsonl"
NOT_SIGNED = (
    "checkpoints are not signed: TALLY_CHECKPOINT_SIGNING_KEY is not set, so a truncation of the "
    "ledger or a rollback to an older head cannot be detected"
)


class CheckpointKeyError(ValueError):
    pass


# --- keys --------------------------------------------------------------------------------------


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(b"tally-checkpoint-key-id\0" + _raw_public(public)).hexdigest()[:16]


def load_private_key(text: str) -> Ed25519PrivateKey:
    """A PEM (PKCS#8) Ed25519 private key, or its 32-byte seed in base64 (or hex)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise CheckpointKeyError("TALLY_CHECKPOINT_SIGNING_KEY is a PEM key but not an Ed25519 one")
        return key
    try:
        seed = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text + "=" * (-len(text) % 4), b"-_")
    except ValueError as exc:
        raise CheckpointKeyError("TALLY_CHECKPOINT_SIGNING_KEY is neither PEM nor 32 bytes in base64/hex") from exc
    if len(seed) != 32:
        raise CheckpointKeyError("TALLY_CHECKPOINT_SIGNING_KEY must hold 32 bytes (an Ed25519 seed)")
    return Ed25519PrivateKey.from_private_bytes(seed)


def signing_key() -> Ed25519PrivateKey | None:
    text = settings.TALLY_CHECKPOINT_SIGNING_KEY
    return load_private_key(text) if text else None


def public_keys() -> dict[str, Ed25519PublicKey]:
    """Every public key trusted to verify checkpoints, by id: the current signing key's and the
    earlier ones in TALLY_CHECKPOINT_OLD_PUBLIC_KEYS (base64 of the 32 raw bytes)."""
    keys = []
    for text in settings.TALLY_CHECKPOINT_OLD_PUBLIC_KEYS:
        if text.strip():
            raw = base64.b64decode(text.strip() + "=" * (-len(text.strip()) % 4), b"-_")
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
    private = signing_key()
    if private is not None:
        keys.append(private.public_key())
    return {public_key_id(k): k for k in keys}


def published_key() -> dict | None:
    """The current public key as published with the reports (None when nothing is signed)."""
    private = signing_key()
    if private is None:
        return None
    public = private.public_key()
    return {
        "algorithm": "Ed25519",
        "key_id": public_key_id(public),
        "public_key": base64.b64encode(_raw_public(public)).decode(),
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
    }


# --- the signed message ------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    project_id: int
    seq: int
    entry_hash: str
    mac: str
    reason: str
    created_at: datetime
    key_id: str
    signature: str
    source: str = "database"

    def as_dict(self) -> dict:
        """How reports and exports name it."""
        return {
            "seq": self.seq,
            "at": self.created_at.isoformat(),
            "key_id": self.key_id,
            "entry_hash": self.entry_hash,
            "reason": self.reason,
        }


def message(*, project_id: int, seq: int, entry_hash: str, mac: str, reason: str, at: datetime, key_id: str) -> bytes:
    body = {
        "v": 1,
        "project": project_id,
        "seq": seq,
        "entry_hash": entry_hash,
        "mac": mac,
        "reason": reason,
        "at": at.isoformat(timespec="microseconds"),
        "key_id": key_id,
    }
    return b"tally-ledger-checkpoint\0" + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def signature_ok(cp: Checkpoint, keys: dict[str, Ed25519PublicKey] | None = None) -> bool | None:
    """True/False; None when the key that signed it is not configured here."""
    public = (public_keys() if keys is None else keys).get(cp.key_id)
    if public is None:
        return None
    try:
        signature = base64.b64decode(cp.signature, validate=True)
        msg = message(
            project_id=cp.project_id,
            seq=cp.seq,
            entry_hash=cp.entry_hash,
            mac=cp.mac,
            reason=cp.reason,
            at=cp.created_at,
            key_id=cp.key_id,
        )
        public.verify(signature, msg)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- writing -----------------------------------------------------------------------------------


def _witness_path() -> Path | None:
    directory = settings.TALLY_CHECKPOINT_DIR
    return Path(directory) / WITNESS_FILE if directory else None


def _witness_append(cp: Checkpoint, project: Project) -> None:
    path = _witness_path()
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(
        {
            "project": cp.project_id,
            "project_slug": project.slug,
            "seq": cp.seq,
            "entry_hash": cp.entry_hash,
            "mac": cp.mac,
            "reason": cp.reason,
            "at": cp.created_at.isoformat(timespec="microseconds"),
            "key_id": cp.key_id,
            "signature": cp.signature,
        },
        sort_keys=True,
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint(
    *, project: Project, reason: str, seq: int | None = None, now: datetime | None = None
) -> LedgerCheckpoint | None:
    """Sign the project's chain head (or the entry at `seq`) and record it in the database and
    the witness file. None when there is no signing key or no entry. Reads the committed head:
    call it after the transaction that moved the head."""
    private = signing_key()
    if private is None:
        logger.warning("labor ledger: %s", NOT_SIGNED)
        return None
    if seq is None:
        seq = ChainHead.objects.filter(project=project).values_list("seq", flat=True).first() or 0
    row = LedgerEntry.objects.filter(project=project, seq=seq).values_list("entry_hash", "mac").first()
    if row is None:
        return None
    at = (now or timezone.now()).astimezone(UTC)
    kid = public_key_id(private.public_key())
    msg = message(project_id=project.pk, seq=seq, entry_hash=row[0], mac=row[1], reason=reason, at=at, key_id=kid)
    signature = base64.b64encode(private.sign(msg)).decode()
    saved = LedgerCheckpoint.objects.create(
        project=project,
        seq=seq,
        entry_hash=row[0],
        mac=row[1],
        reason=reason,
        created_at=at,
        key_id=kid,
        signature=signature,
    )
    _witness_append(from_row(saved), project)
    return saved


def checkpoint_heads(*, now: datetime | None = None) -> int:
    """The scheduled checkpoint: sign every project head that moved since its last checkpoint."""
    if signing_key() is None:
        logger.warning("labor ledger: %s", NOT_SIGNED)
        return 0
    written = 0
    for head in ChainHead.objects.filter(seq__gt=0).select_related("project").order_by("project_id"):
        last = LedgerCheckpoint.objects.filter(project_id=head.project_id).order_by("-seq").values("seq").first()
        if last is not None and last["seq"] >= head.seq:
            continue
        if checkpoint(project=head.project, reason=Reason.SCHEDULE, seq=head.seq, now=now):
            written += 1
    return written


# --- reading -----------------------------------------------------------------------------------


def from_row(row: LedgerCheckpoint) -> Checkpoint:
    return Checkpoint(
        project_id=row.project_id,
        seq=row.seq,
        entry_hash=row.entry_hash,
        mac=row.mac,
        reason=row.reason,
        created_at=row.created_at,
        key_id=row.key_id,
        signature=row.signature,
    )


def witness_checkpoints(project_id: int) -> list[Checkpoint]:
    """The project's checkpoints in the witness file (an unreadable line is skipped)."""
    path = _witness_path()
    if path is None or not path.exists():
        return []
    found = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                d = json.loads(line)
                if d["project"] != project_id:
                    continue
                found.append(
                    Checkpoint(
                        project_id=d["project"],
                        seq=int(d["seq"]),
                        entry_hash=d["entry_hash"],
                        mac=d["mac"],
                        reason=d["reason"],
                        created_at=datetime.fromisoformat(d["at"]),
                        key_id=d["key_id"],
                        signature=d["signature"],
                        source="witness file",
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue
    return found


def latest(project: Project) -> Checkpoint | None:
    """The project's latest checkpoint in the database, as reports name it (its signature is
    checked by verify_ledger, not here)."""
    row = LedgerCheckpoint.objects.filter(project=project).order_by("-seq", "-created_at", "-id").first()
    return from_row(row) if row else None
