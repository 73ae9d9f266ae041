"""Faults of the worker and the broker, on real processes (make test-faults).

Each test starts its own Redis (a port of its own, no persistence) and its own Celery
workers on the test database, and stops them afterwards; the machine's shared Redis is never
touched. A worker's fault hook (worker_main.py) holds a run at a chosen stage so that a test
can kill the worker there, or let the broker's visibility timeout run out under it.
"""

import time

import pytest
from celery import Celery

from tests.support.annotators import label_next
from training.ml import store
from training.models import ModelVersion, TrainingRun

from .harness import OwnRedis, Worker, env_for, wait_for, wait_for_other_sessions_to_end
from .toy import ledger_totals, make_toy_project

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

VISIBILITY_S = 4


@pytest.fixture
def procs(tmp_path):
    """Processes a test starts, stopped (SIGTERM, then SIGKILL) whatever happens."""
    started = []
    yield started
    for proc in reversed(started):
        proc.stop()
    wait_for_other_sessions_to_end()


@pytest.fixture
def redis(tmp_path, procs):
    server = OwnRedis(tmp_path)
    procs.append(server)
    return server


def worker_env(redis, model_store, **extra):
    return env_for(
        REDIS_URL=redis.url,
        CACHE_KEY_PREFIX="security-faults",
        TALLY_MODEL_STORE=model_store,
        TALLY_TRAINING_DEVICE="cpu",
        CELERY_BROKER_VISIBILITY_TIMEOUT_S=VISIBILITY_S,
        **extra,
    )


def send_run(redis, run_id):
    app = Celery(broker=redis.url)
    app.conf.broker_transport_options = {"visibility_timeout": VISIBILITY_S}
    app.send_task("training.tasks.run_training", args=[run_id], queue="training")
    app.close()


def run_state(run_id):
    return TrainingRun.objects.get(pk=run_id)


def final(run_id):
    run = run_state(run_id)
    return run if run.status in ("succeeded", "failed") else None


def test_sigkill_mid_training_then_restart_gives_exactly_one_version(
    admin_user, toy, model_store, redis, procs, tmp_path
):
    project, _ = make_toy_project(admin_user, toy)
    ledger_before = ledger_totals(project)
    run = TrainingRun.objects.create(project=project, trigger=TrainingRun.Trigger.ADMIN)

    doomed = Worker(
        "doomed",
        tmp_path,
        worker_env(redis, model_store, TALLY_TEST_PAUSE_AT_STAGE="training", TALLY_TEST_PAUSE_SECONDS=600),
        queues="training",
    )
    procs.append(doomed)
    send_run(redis, run.pk)
    wait_for(lambda: run_state(run.pk).stage == "training", 90, what="the run to reach its training stage")
    doomed.kill()  # SIGKILL in the middle of the run: no ack, no cleanup
    held = run_state(run.pk)
    assert (held.status, held.attempts) == ("running", 1)
    assert redis.client().hlen("unacked") == 1  # the message is still owed

    time.sleep(VISIBILITY_S + 1)
    survivor = Worker("survivor", tmp_path, worker_env(redis, model_store), queues="training")
    procs.append(survivor)
    done = wait_for(lambda: final(run.pk), 120, what="the run to end")

    assert done.status == "succeeded", done.error
    assert done.attempts == 2 and done.claimed_by.startswith("survivor")
    versions = ModelVersion.objects.filter(run=done)
    assert versions.count() == 1 and ModelVersion.objects.filter(project=project).count() == 1
    version = versions.get()
    store.load_weights(store=model_store, relative=version.weights_path, expected_sha256=version.weights_sha256)
    assert ledger_totals(project) == ledger_before
    time.sleep(2)
    assert redis.client().hlen("unacked") == 0 and redis.client().llen("training") == 0


def test_a_run_that_outlives_the_visibility_timeout_registers_one_version(
    admin_user, toy, model_store, redis, procs, tmp_path
):
    """Worker A holds the run past the broker's visibility timeout (a misconfigured deployment:
    time limit longer than the timeout). Redis hands the message to worker B, which takes the
    run over; A, fenced out by the claim token, registers nothing and overwrites nothing."""
    project, annotator = make_toy_project(admin_user, toy)
    run = TrainingRun.objects.create(project=project, trigger=TrainingRun.Trigger.ADMIN)
    slow = Worker(
        "slow",
        tmp_path,
        worker_env(redis, model_store, TALLY_TEST_PAUSE_AT_STAGE="training", TALLY_TEST_PAUSE_SECONDS=25),
        queues="training",
    )
    procs.append(slow)
    send_run(redis, run.pk)
    wait_for(lambda: run_state(run.pk).stage == "training", 90, what="the slow worker to start training")
    label_next(project, annotator, toy, 4)  # after A read its snapshot: B trains on more labels than A
    ledger_before = ledger_totals(project)
    time.sleep(VISIBILITY_S + 1)
    fast = Worker("fast", tmp_path, worker_env(redis, model_store), queues="training")
    procs.append(fast)
    done = wait_for(lambda: final(run.pk), 90, what="the run to end")
    assert done.status == "succeeded", done.error
    assert done.claimed_by.startswith("fast")
    # the slow worker wakes up, trains, saves and tries to register: fenced out
    wait_for(lambda: "taken over by another worker" in slow.output(), 90, what="the slow worker to be fenced out")
    assert ModelVersion.objects.filter(project=project).count() == 1
    version = ModelVersion.objects.get(run=done)
    store.load_weights(store=model_store, relative=version.weights_path, expected_sha256=version.weights_sha256)
    done.refresh_from_db()
    assert done.status == "succeeded" and done.attempts == 2
    assert ledger_totals(project) == ledger_before
