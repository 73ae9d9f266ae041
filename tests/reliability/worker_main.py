"""A Celery worker with test-only fault hooks, for tests/reliability. Not used outside tests.

    python tests/reliability/worker_main.py worker -A config -Q training ...

TALLY_TEST_PAUSE_AT_STAGE=training TALLY_TEST_PAUSE_SECONDS=300: right after a run records
that stage, the worker sleeps (holding the run and its unacked message), so a test can kill it
there, or let the broker's visibility timeout run out under it.
"""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from training import runs  # noqa: E402

PAUSE_STAGE = os.environ.get("TALLY_TEST_PAUSE_AT_STAGE")
PAUSE_SECONDS = float(os.environ.get("TALLY_TEST_PAUSE_SECONDS", "0"))

if PAUSE_STAGE:
    _original = runs.run_progress

    def run_progress(*, run, stage, **progress):
        _original(run=run, stage=stage, **progress)
        if stage == PAUSE_STAGE:
            print(f"fault hook: pausing {PAUSE_SECONDS} s at stage {stage} of run {run.pk}", flush=True)
            time.sleep(PAUSE_SECONDS)
            print(f"fault hook: resuming run {run.pk}", flush=True)

    runs.run_progress = run_progress

from config.celery_app import app  # noqa: E402

if __name__ == "__main__":
    app.worker_main(sys.argv[1:])
