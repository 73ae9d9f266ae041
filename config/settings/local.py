"""The embedded demo: SQLite, DEBUG on, secrets from the .env that `make demo` generates."""

from .base import *  # noqa: F403
from .base import DATABASES, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# No default: `make demo` generates one into .env (scripts/write_env.py).
SECRET_KEY = env("DJANGO_SECRET_KEY")
# The ledger MAC key from .env (scripts/write_env.py writes one). Without it, one per process:
# entries written then will not verify in a later process (a warning says so).
if not TALLY_LEDGER_MAC_KEY:  # noqa: F405
    import secrets
    import warnings

    TALLY_LEDGER_MAC_KEY = secrets.token_urlsafe(48)
    warnings.warn("TALLY_LEDGER_MAC_KEY is not set: using a key for this process only.", stacklevel=1)

# The demo's SQLite is written by the web server and the Celery worker at once: wait for the
# write lock (and take it at the start of each transaction) instead of failing "database is locked".
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
