"""Pseudonyms for annotators in reports and charts: HMAC-SHA256 of the user's id under a key.

The key is the setting TALLY_PSEUDONYM_KEY, read from the environment, kept apart from
SECRET_KEY and from the data: whoever holds a report cannot reverse or recompute a pseudonym
without the key, and the same person gets the same pseudonym in every report made under one
key (so auditors can follow someone across reports without learning who it is). Rotating the
key changes every pseudonym. A pseudonym is derived from the user id only, never from a name
or an email, so neither can appear in a pseudonymized report.
"""

import hashlib
import hmac

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PREFIX = "anon-"
HEX_CHARS = 16  # 64 bits: collisions are negligible for any number of annotators a project has
MIN_KEY_LENGTH = 16


class PseudonymKeyMissing(ImproperlyConfigured):
    """Pseudonymized output was asked for but no usable key is configured."""


def pseudonym_key() -> bytes:
    """The configured key, or PseudonymKeyMissing with what to do about it."""
    key = getattr(settings, "TALLY_PSEUDONYM_KEY", "") or ""
    if not key:
        raise PseudonymKeyMissing(
            "Pseudonymized reports need a key: set the environment variable TALLY_PSEUDONYM_KEY to a random "
            "secret of at least 16 characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), "
            "kept apart from DJANGO_SECRET_KEY and from the database."
        )
    if len(key) < MIN_KEY_LENGTH:
        raise PseudonymKeyMissing(f"TALLY_PSEUDONYM_KEY is too short: use at least {MIN_KEY_LENGTH} characters.")
    if key == getattr(settings, "SECRET_KEY", None):
        raise PseudonymKeyMissing("TALLY_PSEUDONYM_KEY must differ from SECRET_KEY: keep the two keys apart.")
    return key.encode("utf-8")


def pseudonyms_available() -> bool:
    try:
        pseudonym_key()
    except PseudonymKeyMissing:
        return False
    return True


def key_fingerprint() -> str:
    """A short, non-reversible name for the key in use (for cache keys and report metadata), or ""."""
    try:
        key = pseudonym_key()
    except PseudonymKeyMissing:
        return ""
    return hmac.new(key, b"tally-pseudonym-key-fingerprint", hashlib.sha256).hexdigest()[:12]


def pseudonym(user_id: int, *, key: bytes | None = None) -> str:
    """The pseudonym of one annotator: stable under one key, unlinkable without it."""
    key = key if key is not None else pseudonym_key()
    digest = hmac.new(key, f"tally-annotator:{int(user_id)}".encode(), hashlib.sha256).hexdigest()
    return PREFIX + digest[:HEX_CHARS]


def pseudonym_map(user_ids) -> dict[int, str]:
    """Pseudonyms for a set of ids (one HMAC per distinct annotator, not per row)."""
    key = pseudonym_key()
    return {int(uid): pseudonym(uid, key=key) for uid in set(user_ids) if uid is not None}
