"""Tally as the side-by-side benchmark runs it: the shared base settings with DEBUG off.

The harness (bench/peers/run.py) sets DATABASE_URL (a throwaway SQLite file or PostgreSQL
database), REDIS_URL, CACHE_KEY_PREFIX, a generated DJANGO_SECRET_KEY and BENCH_CELERY_QUEUE.
Nothing here tunes Tally for the benchmark: database, connection and cache settings are the
defaults of config/settings/base.py.
"""

from config.settings.base import *  # noqa: F403
from config.settings.base import env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")  # generated per run by the harness, never stored
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

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
