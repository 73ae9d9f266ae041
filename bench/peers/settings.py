"""Tally as the side-by-side benchmark runs it: its own SQLite mode (config/settings/local.py,
what `make demo` runs) or its PostgreSQL mode, with DEBUG off.

The harness (bench/peers/run.py) sets DATABASE_URL (a throwaway SQLite file or PostgreSQL
database), REDIS_URL, CACHE_KEY_PREFIX, a generated DJANGO_SECRET_KEY and BENCH_CELERY_QUEUE.
Nothing here tunes Tally for the benchmark beyond what its own modes set.
"""

from config.settings.local import *  # noqa: F403
from config.settings.local import DATABASES, env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")  # generated per run by the harness, never stored
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

# Tally's SQLite mode waits for the write lock instead of failing concurrent writers with
# "database is locked" (config/settings/local.py sets this for the demo on the frontend branch;
# set here too so the benchmark measures that mode on branches that predate it).
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options.setdefault("timeout", 20)
    options.setdefault("transaction_mode", "IMMEDIATE")

# Every task of this run goes to a queue of its own, consumed only by the run's own worker, so
# no other worker on the machine (tests, a demo) picks up the benchmark's imports and ours
# never runs theirs.
BENCH_CELERY_QUEUE = env("BENCH_CELERY_QUEUE", default="bench-peers")
# Model-in-the-loop retraining is not part of any measured call (Label Studio has no model
# attached either): its tasks go to a queue nobody consumes, which the harness deletes at the end.
BENCH_CELERY_PARKED_QUEUE = BENCH_CELERY_QUEUE + "-parked"
CELERY_TASK_DEFAULT_QUEUE = BENCH_CELERY_QUEUE
CELERY_TASK_ROUTES = {
    "training.*": {"queue": BENCH_CELERY_PARKED_QUEUE},
    "*": {"queue": BENCH_CELERY_QUEUE},
}
