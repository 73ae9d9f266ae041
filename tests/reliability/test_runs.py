"""A training run executes once, whatever the broker does: the task run twice in a row or at
the same time, a redelivered message, a worker fenced out after another took the run over,
twenty admins asking at once, a request in a transaction that rolls back, and messages the
broker lost (the sweeper)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Annotation, Label
from tests.support.annotators import label_next
from tests.support.waiting import wait_for
from training import pipeline, runs, services, tasks
from training.ml import store
from training.models import ModelVersion, TrainingRun
from training.worker_cache import worker_cache

from .toy import ledger_totals, make_toy_project


def queued_run(project) -> TrainingRun:
    return TrainingRun.objects.create(project=project, trigger=TrainingRun.Trigger.ADMIN)


def in_threads(n, target):
    """Run target(i) in n threads released together; re-raise the first error."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def run(i):
        try:
            barrier.wait()
            results[i] = target(i)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results


def test_the_task_run_twice_in_a_row_registers_one_version(toy_project):
    project, _ = toy_project
    run = queued_run(project)
    first = pipeline.execute_run(run_id=run.pk, task_id="t-1", worker="w1")
    second = pipeline.execute_run(run_id=run.pk, task_id="t-1", worker="w1", redelivered=True)
    third = pipeline.execute_run(run_id=run.pk, task_id="t-2", worker="w2")
    assert first is not None and second is None and third is None
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("succeeded", 1)
    assert ModelVersion.objects.filter(run=run).count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("redelivered", [False, True], ids=["two-messages", "one-message-redelivered"])
def test_the_task_run_twice_at_once_registers_one_version(admin_user, toy, model_store, redelivered):

    project, annotator = make_toy_project(admin_user, toy)
    before = ledger_totals(project)
    run = queued_run(project)
    # two different messages (a re-send), or the very same message delivered twice
    task_ids = ["same", "same"] if redelivered else ["a", "b"]
    results = in_threads(
        2,
        lambda i: pipeline.execute_run(
            run_id=run.pk, task_id=task_ids[i], worker=f"w{i}", redelivered=redelivered and i == 1
        ),
    )
    assert len([r for r in results if r is not None]) == 1, results
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert ModelVersion.objects.filter(project=project).count() == 1
    version = ModelVersion.objects.get(project=project)
    store.load_weights(store=model_store, relative=version.weights_path, expected_sha256=version.weights_sha256)
    assert ledger_totals(project) == before


def test_a_fenced_out_worker_cannot_overwrite_the_registered_weights(toy_project, toy, model_store):
    """Worker A claims the run and is slow; its lease (or the broker's visibility timeout)
    runs out and worker B takes the run over and registers the version. When A finally gets
    to save and register, it must neither register a second version nor replace B's weights
    file (the version's sha256 would then name a file that no longer exists)."""
    project, annotator = toy_project
    run = queued_run(project)
    slow = runs.run_claim(run_id=run.pk, task_id="msg", worker="A")
    assert slow is not None
    TrainingRun.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    version_id = pipeline.execute_run(run_id=run.pk, task_id="msg", worker="B", redelivered=True)
    assert version_id is not None
    label_next(project, annotator, toy, 3)  # meanwhile more labels: A trains on other data
    assert pipeline._train(slow) is None  # A is fenced out
    version = ModelVersion.objects.get(pk=version_id)
    assert ModelVersion.objects.filter(run=run).count() == 1
    assert TrainingRun.objects.get(pk=run.pk).claimed_by == "B"
    store.load_weights(store=model_store, relative=version.weights_path, expected_sha256=version.weights_sha256)
    worker_cache.clear()
    assert worker_cache.classifier(version) is not None


def test_a_claim_taken_over_the_moment_it_is_made_keeps_its_own_token(toy_project, toy, model_store):
    """The race CI once lost: a redelivered message takes the run over between worker A's
    claiming UPDATE and A reading the run back. A must still hold its own token, or A and B
    write the same weights file and the registered sha256 names the other's bytes."""
    project, annotator = toy_project
    run = queued_run(project)
    taken_over = {}

    def take_over_right_after_the_claim(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not taken_over and sql.startswith("UPDATE") and "claim_token" in sql:
            taken_over["run"] = None  # once: the nested claim runs through this wrapper too
            taken_over["run"] = runs.run_claim(run_id=run.pk, task_id="msg", worker="B", redelivered=True)
        return result

    with connection.execute_wrapper(take_over_right_after_the_claim):
        slow = runs.run_claim(run_id=run.pk, task_id="msg", worker="A")
    fast = taken_over["run"]
    assert slow is not None and fast is not None
    assert slow.claim_token != fast.claim_token
    version_id = pipeline._train(fast)
    assert version_id is not None
    assert pipeline._train(slow) is None  # A is fenced out and left B's weights alone
    version = ModelVersion.objects.get(pk=version_id)
    store.load_weights(store=model_store, relative=version.weights_path, expected_sha256=version.weights_sha256)


@pytest.mark.django_db(transaction=True)
def test_twenty_simultaneous_retrain_requests_queue_one_run(admin_user, toy, model_store, monkeypatch):

    project, _ = make_toy_project(admin_user, toy)
    sent = []
    monkeypatch.setattr(services, "_enqueue", lambda run_id: sent.append(run_id))

    def ask(_):
        client = APIClient()
        client.force_authenticate(admin_user)
        response = client.post(f"/api/projects/{project.slug}/training/runs/", {}, format="json")
        return response.status_code, response.data

    answers = in_threads(20, ask)
    codes = sorted(code for code, _ in answers)
    assert codes == [201] + [409] * 19, codes
    run = TrainingRun.objects.get(project=project)
    assert run.status == "queued"
    created = next(data for code, data in answers if code == 201)
    assert created["id"] == run.pk
    assert all(
        data["run"]["id"] == run.pk and data["code"] == "run_already_queued" for code, data in answers if code == 409
    )
    assert sent == [run.pk]  # one doorbell


@pytest.mark.django_db(transaction=True)
def test_a_retrain_requested_in_a_transaction_that_rolls_back_sends_nothing(admin_user, toy, model_store, monkeypatch):
    from training import tasks

    project, _ = make_toy_project(admin_user, toy)
    sent = []
    monkeypatch.setattr(tasks.run_training, "delay", lambda run_id: sent.append(run_id))

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        services.training_run_request(project=project, requested_by=admin_user)
        raise Abort
    assert sent == [] and not TrainingRun.objects.filter(project=project).exists()
    # the same request committed sends exactly one
    run = services.training_run_request(project=project, requested_by=admin_user)
    assert sent == [run.pk]


@pytest.mark.django_db(transaction=True)
def test_labels_in_a_rolled_back_submission_send_nothing(admin_user, toy, model_store, monkeypatch):
    from annotation import services as annotation_services
    from training import tasks

    project, annotator = make_toy_project(admin_user, toy, labeled=0)
    services.config_update(project=project, min_labels=2, enabled=True)
    sent = []
    monkeypatch.setattr(tasks.run_training, "delay", lambda run_id: sent.append(run_id))
    positive = Label.objects.get(project=project, name="positive")
    with pytest.raises(RuntimeError), transaction.atomic():
        for _ in range(6):
            attempt = annotation_services.claim_next(project=project, annotator=annotator)
            annotation_services.annotation_submit(attempt_id=attempt.pk, annotator=annotator, label_ids=[positive.pk])
        raise RuntimeError("the request failed after the submissions")
    assert sent == [] and not Annotation.objects.filter(project=project).exists()


# --- the sweeper ----------------------------------------------------------------------------


def test_the_sweeper_resends_exactly_the_runs_whose_message_may_be_lost(toy_project, settings, monkeypatch):
    project, _ = toy_project
    from annotation.models import Project

    settings.TALLY_TRAINING_RESEND_AFTER_SECONDS = 60
    now = timezone.now()
    long_ago, just_now = now - timedelta(minutes=5), now - timedelta(seconds=5)
    others = [Project.objects.create(name=f"p{i}", slug=f"p-{i}") for i in range(5)]

    def run(p, **fields):
        r = TrainingRun.objects.create(project=p)
        TrainingRun.objects.filter(pk=r.pk).update(**fields)
        return r.pk

    lost_queued = run(project, enqueued_at=long_ago)
    never_sent = run(others[0], enqueued_at=None, created_at=long_ago)
    fresh = run(others[1], enqueued_at=just_now)
    just_created = run(others[2], enqueued_at=None)
    dead_worker = run(others[3], status="running", lease_expires_at=now - timedelta(seconds=1), enqueued_at=long_ago)
    live_worker = run(others[4], status="running", lease_expires_at=now + timedelta(minutes=5), enqueued_at=long_ago)
    finished = run(others[4], status="succeeded", enqueued_at=long_ago)
    sent = []
    monkeypatch.setattr("training.tasks.run_training.delay", lambda run_id: sent.append(run_id))
    assert tasks.runs_resend_lost(now=now) == sorted([lost_queued, never_sent, dead_worker])
    assert sorted(sent) == sorted([lost_queued, never_sent, dead_worker])
    assert fresh not in sent and just_created not in sent and live_worker not in sent and finished not in sent
    # a re-sent run waits another interval before the next re-send
    sent.clear()
    assert tasks.runs_resend_lost(now=now + timedelta(seconds=1)) == []


def test_the_sweeper_is_scheduled_on_the_default_queue(settings):
    from config.celery_app import app

    entry = settings.CELERY_BEAT_SCHEDULE["training-sweep-lost-runs"]
    assert entry["task"] == "training.tasks.sweep_lost_runs" and entry["schedule"] <= 300
    assert settings.TALLY_TRAINING_RESEND_AFTER_SECONDS > 2 * entry["schedule"] or entry["schedule"] < 120
    route = app.amqp.router.route({}, "training.tasks.sweep_lost_runs")
    assert route["queue"].name == "default"
    assert app.amqp.router.route({}, "training.tasks.run_training")["queue"].name == "training"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_run_whose_message_was_lost_is_executed_once_by_the_swept_doorbell(celery_worker, admin_user, toy, settings):
    """On the real worker: a queued run with no message anywhere (as after a Redis restart)
    is found by the sweeper task, executed once, and the re-sent duplicate is a no-op."""
    from training import tasks

    project, _ = make_toy_project(admin_user, toy)
    run = queued_run(project)
    TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(hours=1))
    tasks.sweep_lost_runs.delay()
    tasks.run_training.delay(run.pk)  # and a stray duplicate, as when the message was not lost after all
    run = wait_for(lambda: TrainingRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed"]).first(),
                   timeout=90, what="the run to end")  # fmt: skip
    assert run.status == "succeeded", run.error
    celery_worker.wait_idle()  # the duplicate consumed
    run.refresh_from_db()
    assert run.attempts == 1 and ModelVersion.objects.filter(project=project).count() == 1
