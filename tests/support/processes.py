"""Environments for the processes tests start themselves (workers, gunicorn, scripts): the
test database pytest-django created, and a throwaway model store."""

import os
import tempfile
from functools import cache
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def database_url_for_subprocess() -> str:
    """A URL for the database pytest-django created, for processes we start ourselves."""
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


@cache
def throwaway_model_store() -> str:
    """One per session, so a worker never writes into the checkout's var/models."""
    return tempfile.mkdtemp(prefix="tally-models-")


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env.setdefault("TALLY_MODEL_STORE", throwaway_model_store())
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=database_url_for_subprocess(),
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        # the same ledger MAC key as this process: entries a server writes must verify here
        TALLY_LEDGER_MAC_KEY=settings.TALLY_LEDGER_MAC_KEY,
        TALLY_CHECKPOINT_SIGNING_KEY=settings.TALLY_CHECKPOINT_SIGNING_KEY,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env
