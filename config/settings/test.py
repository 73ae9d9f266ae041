"""The test suite: PostgreSQL, the real Redis and a real Celery worker (see tests/conftest.py)."""

import base64
import secrets

from .base import *  # noqa: F403
from .base import env

# A fresh throwaway key per process: tests never depend on its value.
SECRET_KEY = env("DJANGO_SECRET_KEY", default=secrets.token_urlsafe(50))
# The ledger MAC key: random per test process unless given (labor_ledger/chain.py).
TALLY_LEDGER_MAC_KEY = TALLY_LEDGER_MAC_KEY or secrets.token_urlsafe(48)  # noqa: F405
# The checkpoint signing key (Ed25519 seed, base64): random per test process unless given.
TALLY_CHECKPOINT_SIGNING_KEY = TALLY_CHECKPOINT_SIGNING_KEY or base64.b64encode(secrets.token_bytes(32)).decode()  # noqa: F405
DEBUG = False
DATABASES = {"default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/tally")}
# Fast hashing in tests; production keeps Argon2 (base.py), and a test checks that.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
