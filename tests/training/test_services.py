"""Training services, the run rows (training.runs) and the pipeline, called directly (the
worker's code, no broker)."""

from datetime import timedelta

import numpy as np
import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation import services as annotation_services
from annotation.models import Annotation, Example, Label
from annotation.queue import candidate_examples
from core.errors import Conflict, ValidationFailed
from tests.support.annotators import label_next
from training import debounce, pipeline, runs, selectors, services, tasks
from training.ml.classifiers import HashedClassifier
from training.models import ManifestEntry, ModelVersion, Prediction, ProjectTrainingConfig, TrainingRun


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """Runs are executed by calling the pipeline; the doorbell is recorded, not rung."""
    rung = []

    def enqueue(run_id):
        rung.append(run_id)
        TrainingRun.objects.filter(pk=run_id).update(enqueued_at=timezone.now())

    monkeypatch.setattr(services, "_enqueue", enqueue)
    return rung


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def queued(project):
    return TrainingRun.objects.filter(project=project, status=TrainingRun.Status.QUEUED)


def test_labels_queue_at_most_one_run_and_labels_during_a_run_queue_the_next(
    toy_project, labeler, toy, on_commit, no_broker
):
    # given: enough labels for a first model
    with on_commit():
        label_next(toy_project, labeler, toy, n=6)
    assert queued(toy_project).count() == 1
    first = queued(toy_project).get()
    assert set(no_broker) == {first.pk}  # rung after commit (a repeated bell is harmless: claims are fenced)
    # when: more labels arrive while it is still queued
    with on_commit():
        label_next(toy_project, labeler, toy, n=3)
    # then: still one queued run (debounced)
    assert queued(toy_project).count() == 1
    # when: the run starts and labels keep arriving
    runs.run_claim(run_id=first.pk, task_id="t1")
    with on_commit():
        label_next(toy_project, labeler, toy, n=2)
    # then: the next run is queued behind the running one
    rows = TrainingRun.objects.filter(project=toy_project).order_by("id")
    assert [r.status for r in rows] == ["running", "queued"]


def test_no_run_before_min_labels_over_two_classes(toy_project, labeler, toy, on_commit):
    with on_commit():
        label_next(toy_project, labeler, toy, n=3)  # min_labels is 4
    assert not TrainingRun.objects.filter(project=toy_project).exists()
    with on_commit():
        label_next(toy_project, labeler, toy, n=1)
    assert queued(toy_project).count() == 1


def test_retrain_every_n_labels(toy_project, labeler, toy, on_commit):
    services.config_update(project=toy_project, retrain_every_n_labels=3)
    with on_commit():
        label_next(toy_project, labeler, toy, n=5)
    assert TrainingRun.objects.filter(project=toy_project).count() == 1  # at the 3rd label
    runs.run_claim(run_id=queued(toy_project).get().pk, task_id="t1")
    # the 4th and 5th labels were counted (in Redis): the 6th is the next third
    with on_commit():
        label_next(toy_project, labeler, toy, n=1)
    assert TrainingRun.objects.filter(project=toy_project).count() == 2
    runs.run_claim(run_id=queued(toy_project).get().pk, task_id="t2")
    with on_commit():
        label_next(toy_project, labeler, toy, n=2)
    assert TrainingRun.objects.filter(project=toy_project).count() == 2  # two of three
    with on_commit():
        label_next(toy_project, labeler, toy, n=1)
    assert TrainingRun.objects.filter(project=toy_project).count() == 3


def test_a_label_while_a_run_is_pending_costs_no_database_statement(toy_project, labeler, toy, on_commit):
    with on_commit():
        label_next(toy_project, labeler, toy, n=6)
    run = queued(toy_project).get()
    label = toy_project.labels.first().pk
    with CaptureQueriesContext(connection) as statements:
        services.labels_changed(project_id=toy_project.pk, label_ids=[label])
    assert statements.captured_queries == []  # counted in Redis; the queued run will read it
    # the run starts (the flag is cleared before it reads the labels): the next label queues the next run
    runs.run_claim(run_id=run.pk, task_id="t1")
    services.labels_changed(project_id=toy_project.pk, label_ids=[label])
    assert queued(toy_project).get().pk != run.pk


def test_without_redis_labels_still_queue_a_run_and_submissions_succeed(
    toy_project, labeler, toy, on_commit, monkeypatch
):
    monkeypatch.setattr(debounce, "_client", redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))
    with on_commit():
        label_next(toy_project, labeler, toy, n=3)  # min_labels is 4: no run yet
    assert not TrainingRun.objects.filter(project=toy_project).exists()
    with on_commit():
        label_next(toy_project, labeler, toy, n=3)
    assert Annotation.objects.filter(project=toy_project).count() == 6
    assert queued(toy_project).count() == 1  # decided from the database, one queued run at most


def test_the_catch_up_queues_the_run_a_lost_count_owed(toy_project, labeler, toy, on_commit):
    services.config_update(project=toy_project, retrain_every_n_labels=3)
    label_next(toy_project, labeler, toy, n=2)  # their after-commit counts never ran (a process died)
    assert tasks.runs_catch_up() == []  # 2 label events: fewer than 3, and fewer than min_labels
    label_next(toy_project, labeler, toy, n=3)
    (queued_id,) = tasks.runs_catch_up()
    assert queued(toy_project).get().pk == queued_id
    assert tasks.runs_catch_up() == []  # a run is queued: nothing owed
    run = runs.run_claim(run_id=queued_id, task_id="t1")
    assert tasks.runs_catch_up() == []  # and while it runs
    runs.run_fail(run=run, error="stopped by the test")
    assert tasks.runs_catch_up() == []  # its snapshot had every label: nothing newer than its start


def test_running_the_task_twice_registers_one_version(toy_project, labeler, toy, on_commit):
    with on_commit():
        label_next(toy_project, labeler, toy, n=12)
    run = queued(toy_project).get()
    first = pipeline.execute_run(run_id=run.pk, task_id="a")
    second = pipeline.execute_run(run_id=run.pk, task_id="b")
    assert first is not None and second is None
    assert ModelVersion.objects.filter(run=run).count() == 1
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED and run.attempts == 1


def test_a_fenced_out_worker_cannot_register(toy_project, labeler, toy, on_commit):
    with on_commit():
        label_next(toy_project, labeler, toy, n=12)
    run = queued(toy_project).get()
    zombie = runs.run_claim(run_id=run.pk, task_id="a")
    # a second claim fails while the lease holds ...
    assert runs.run_claim(run_id=run.pk, task_id="b") is None
    # ... and succeeds once it ran out (the first worker is presumed dead)
    later = timezone.now() + timedelta(seconds=10_000)
    heir = runs.run_claim(run_id=run.pk, task_id="b", now=later)
    assert heir is not None and heir.claim_token != zombie.claim_token
    # the zombie wakes up: its registration is refused, its failure report ignored
    snap = selectors.training_snapshot(project=toy_project, config=services.config_get(project_id=toy_project.pk))
    version, promoted = runs.version_register(
        run=zombie,
        snapshot=snap,
        kind="hashed",
        hyperparams={},
        encoder_key="",
        device="cpu",
        device_name="cpu",
        timings={},
        metrics={},
        weights_path="x.safetensors",
        weights_sha256="0" * 64,
    )
    assert version is None and not promoted
    assert not runs.run_fail(run=zombie, error="zombie")
    # the heir finishes the run
    assert pipeline._train(heir) is not None
    assert ModelVersion.objects.filter(run=run).count() == 1


def test_a_redelivered_message_takes_its_own_run_back(toy_project, labeler, toy, on_commit):
    with on_commit():
        label_next(toy_project, labeler, toy, n=6)
    run = queued(toy_project).get()
    assert runs.run_claim(run_id=run.pk, task_id="msg-1") is not None
    # the worker died; the broker redelivers the same message to another worker
    assert runs.run_claim(run_id=run.pk, task_id="msg-2", redelivered=True) is None
    again = runs.run_claim(run_id=run.pk, task_id="msg-1", redelivered=True)
    assert again is not None and again.attempts == 2


def test_manifest_is_the_accepted_annotations_when_the_run_started(toy_project, labeler, toy, on_commit, monkeypatch):
    # given: 14 labels, one of them retracted
    with on_commit():
        label_next(toy_project, labeler, toy, n=14)
        annotation_services.annotation_undo_last(project=toy_project, annotator=labeler)
    run = queued(toy_project).get()
    # when: a label arrives while the model is training
    original_fit = HashedClassifier.fit

    def fit_while_labeling(self, *args, **kwargs):
        label_next(toy_project, labeler, toy, n=1)
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(HashedClassifier, "fit", fit_while_labeling)
    version = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=run.pk))
    # then: the manifest holds exactly the accepted annotations of the snapshot, minus held-out ones
    accepted = Annotation.objects.filter(
        project=toy_project, status=Annotation.Status.ACCEPTED, created_at__lte=version.snapshot_at
    ).select_related("example")
    config = ProjectTrainingConfig.objects.get(project=toy_project)
    expected = {
        (a.pk, a.example_id, a.labels.get().pk)
        for a in accepted
        if not selectors.in_holdout(a.example.text_hash, config.holdout_share)
    }
    got = set(ManifestEntry.objects.filter(version=version).values_list("annotation_id", "example_id", "label_id"))
    assert got == expected
    assert len(got) == version.n_annotations == version.n_examples
    assert version.manifest_hash == selectors.manifest_hash(expected)
    # the label submitted during training and the retracted one are not in it
    newest = Annotation.objects.filter(project=toy_project).latest("id")
    retracted = Annotation.objects.get(project=toy_project, status=Annotation.Status.RETRACTED)
    assert newest.created_at > version.snapshot_at
    assert not {newest.pk, retracted.pk} & {a for a, _, _ in got}


def test_an_older_run_finishing_late_does_not_replace_the_current_version(toy_project, labeler, toy, on_commit):
    with on_commit():
        label_next(toy_project, labeler, toy, n=8)
    older = queued(toy_project).get()
    older = runs.run_claim(run_id=older.pk, task_id="old")
    with on_commit():
        label_next(toy_project, labeler, toy, n=4)
    newer = queued(toy_project).get()
    newer_version = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=newer.pk))
    # when: the older run finishes after the newer one
    older_version = ModelVersion.objects.get(pk=pipeline._train(older))
    # then: it is registered, with a parent, but the newer run's version stays current
    assert older_version.sequence == newer_version.sequence + 1
    assert older_version.parent == newer_version
    assert selectors.current_version(project=toy_project) == newer_version
    assert set(Prediction.objects.filter(project=toy_project).values_list("version_id", flat=True)) == {
        newer_version.pk
    }


def test_scores_reorder_the_queue_most_uncertain_first(toy_project, labeler, toy, on_commit, admin_user):
    with on_commit():
        label_next(toy_project, labeler, toy, n=10)
    assert set(Example.objects.filter(project=toy_project).values_list("priority", flat=True)) == {0.0}
    version = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=queued(toy_project).get().pk))
    # every example has a prediction from the version; unlabeled ones have a queue position
    preds = {p.example_id: p for p in Prediction.objects.filter(project=toy_project)}
    assert len(preds) == 40 and {p.version_id for p in preds.values()} == {version.pk}
    offered = list(candidate_examples(project=toy_project, annotator=admin_user, now=timezone.now())[:9])
    margins = [preds[e.pk].margin for e in offered]
    # the first nine positions (before the first QC slot) follow the margin, smallest first, but
    # for the diversity slot (position 4: the least similar of the next uncertain ones)
    claimable_margins = sorted(
        p.margin for p in preds.values() if Example.objects.get(pk=p.example_id).submitted_count == 0
    )
    assert [e.priority_reason for e in offered] == ["uncertainty"] * 4 + ["diversity"] + ["uncertainty"] * 4
    uncertain = [m for e, m in zip(offered, margins, strict=True) if e.priority_reason == "uncertainty"]
    assert uncertain == sorted(uncertain) and set(uncertain) <= set(claimable_margins[:9])
    assert all(e.priority > 0 for e in offered)


def test_registered_versions_cannot_change(toy_project, labeler, toy, on_commit):
    with on_commit():
        label_next(toy_project, labeler, toy, n=6)
    version = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=queued(toy_project).get().pk))
    version.metrics = {"accuracy": 1.0}
    with pytest.raises(ValueError, match="cannot be changed"):
        version.save()


def test_metrics_and_timings_are_recorded(toy_project, labeler, toy, on_commit):
    with on_commit():
        label_next(toy_project, labeler, toy, n=30)
    version = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=queued(toy_project).get().pk))
    m = version.metrics
    assert m["eval_source"] == "holdout" and m["eval_size"] > 0
    assert m["eval_size"] + m["n_train_examples"] == 30
    assert set(m["per_class"]) == {"positive", "negative"}
    assert np.array(m["confusion_matrix"]["matrix"]).sum() == m["eval_size"]
    assert 0.0 <= m["ece"] <= 1.0 and m["accuracy"] >= 0.5
    assert len(m["history"]) >= 4 and all(h["eval_accuracy"] is not None for h in m["history"])
    assert version.device == "cpu" and version.device_name.startswith("cpu")
    assert version.training_seconds > 0 and version.scoring_seconds > 0
    assert version.kind == "hashed" and version.hyperparams["buckets"] == 1 << 18
    assert version.n_annotators == 1


def test_a_share_of_the_gold_labels_is_the_evaluation_split_and_never_trained_on(toy_project, labeler, toy, on_commit):
    labels = dict(Label.objects.filter(project=toy_project).values_list("name", "id"))
    gold = list(Example.objects.filter(project=toy_project).order_by("-id")[:10])
    for ex in gold:
        ex.gold_label_id = labels[toy[ex.text]]
        ex.save(update_fields=["gold_label"])
    with on_commit():
        label_next(toy_project, labeler, toy, n=40)  # annotators label everything, gold items too
    version = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=queued(toy_project).get().pk))
    # the holdout share (25% here) of the 10 gold texts is held out; the other gold texts train
    assert version.metrics["eval_source"] == "gold" and version.metrics["eval_size"] == 3
    held_out = set(
        Example.objects.filter(pk__in=[ex.pk for ex in gold]).order_by("text_hash")[:3].values_list("pk", flat=True)
    )
    trained_on = set(ManifestEntry.objects.filter(version=version).values_list("example_id", flat=True))
    assert not trained_on & held_out
    assert len(trained_on) == 37


def test_not_enough_labels_fails_the_run_with_a_clear_error(toy_project, labeler, toy, admin_user):
    label_next(toy_project, labeler, toy, n=1)
    run = services.training_run_request(project=toy_project, requested_by=admin_user)
    assert pipeline.execute_run(run_id=run.pk) is None
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "Not enough labels to train yet" in run.error


def test_admin_request_conflicts_with_a_queued_run(toy_project, admin_user):
    run = services.training_run_request(project=toy_project, requested_by=admin_user)
    with pytest.raises(Conflict) as exc:
        services.training_run_request(project=toy_project, requested_by=admin_user)
    assert exc.value.run == run
    with pytest.raises(ValidationFailed, match="fine-tunes MiniLM"):
        services.training_run_request(project=toy_project, requested_by=admin_user, loop="deep")


def test_accepted_predictions_become_machine_labels_not_labor(
    toy_project, labeler, toy, on_commit, admin_user, monkeypatch
):
    from annotation import hooks as annotation_hooks

    with on_commit():
        label_next(toy_project, labeler, toy, n=10)
    pipeline.execute_run(run_id=queued(toy_project).get().pk)
    ledger_calls = []
    monkeypatch.setattr(annotation_hooks.attempt_closed, "_handlers", [ledger_calls.append])
    monkeypatch.setattr(annotation_hooks.annotation_status_changed, "_handlers", [ledger_calls.append])
    # when
    with on_commit():
        batch = services.machine_labels_accept(project=toy_project, admin=admin_user, min_confidence=0.0, limit=5)
    accepted = batch.accepted_annotations
    assert batch.accepted == 5 and set(batch.annotations.all()) == set(accepted)
    # then: five unlabeled examples got the model's label, as machine labels of the admin
    assert len(accepted) == 5
    for annotation in Annotation.objects.filter(pk__in=[a.pk for a in accepted]):
        assert annotation.source == Annotation.Source.MACHINE and annotation.attempt_id is None
        assert annotation.annotator == admin_user
        prediction = Prediction.objects.get(example_id=annotation.example_id)
        assert list(annotation.labels.values_list("id", flat=True)) == [prediction.label_id]
        assert annotation.example.submitted_count == 0  # not human work toward the overlap
    assert ledger_calls == []
    # they leave the queue, and are not accepted twice; a new run was requested
    offered = set(
        candidate_examples(project=toy_project, annotator=labeler, now=timezone.now()).values_list("id", flat=True)
    )
    assert not offered & {a.example_id for a in accepted}
    again = services.machine_labels_accept(
        project=toy_project, admin=admin_user, min_confidence=0.0, limit=40
    ).accepted_annotations
    assert not {a.example_id for a in again} & {a.example_id for a in accepted}
    assert len(again) == 40 - 10 - 5
    assert queued(toy_project).exists()


def test_machine_labels_need_a_model(toy_project, admin_user):
    with pytest.raises(Conflict, match="no trained model"):
        services.machine_labels_accept(project=toy_project, admin=admin_user, min_confidence=0.9)


def test_multi_label_projects_are_refused_clearly(admin_user, toy, monkeypatch):
    from tests.factories import add_examples, make_project

    project = make_project(admin=admin_user, name="Multi", label_mode="multi")
    add_examples(project, list(toy)[:4])
    run = services.training_run_request(project=project, requested_by=admin_user)
    pipeline.execute_run(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and "single-label" in run.error


def test_each_version_lifts_its_queue_positions_above_older_ones(toy_project, labeler, toy, on_commit, admin_user):
    with on_commit():
        label_next(toy_project, labeler, toy, n=10)
    v1 = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=queued(toy_project).get().pk))
    claimable = Example.objects.filter(project=toy_project, submitted_count=0)
    assert all(2 < p <= 3 for p in claimable.values_list("priority", flat=True))  # v1: (2*1, 2*1 + 1]
    run = services.training_run_request(project=toy_project, requested_by=admin_user)
    v2 = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=run.pk))
    assert v2.sequence == v1.sequence + 1
    assert all(4 < p <= 5 for p in claimable.values_list("priority", flat=True))
    labeled = Example.objects.filter(project=toy_project, submitted_count__gt=0)
    assert set(labeled.values_list("priority", flat=True)) == {0.0}
