"""Training's writes on the web side: a project's training config, runs asked for (by an
admin, or by labels arriving: the debounce), and machine labels accepted. Called by the web
views and APIs, and by annotation.services after its labels commit. Imported by the web
process: never import torch here.

The worker's side of a run lives below: training.tasks (the Celery tasks and the doorbells
that send them), training.pipeline (the run's steps), training.featurizers,
training.worker_cache and training.runs (the run row's life and the worker's writes). Imports
run that one way: services -> tasks -> pipeline -> featurizers -> worker_cache -> runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import fields as dataclass_fields
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone

from annotation import hooks as annotation_hooks
from annotation import services as annotation_services
from annotation.models import Annotation, Project
from core.errors import Conflict, NotFound, ValidationFailed

from . import debounce, memory, runs, selectors, tasks
from .ml.classifiers import HyperParams
from .models import AcceptBatch, Aggregation, Loop, ModelKind, ProjectTrainingConfig, TrainingRun
from .runs import config_get
from .tasks import embeddings_schedule

logger = logging.getLogger(__name__)

__all__ = [  # config_get and embeddings_schedule are the web's entry points to runs and tasks
    "config_get",
    "config_update",
    "embeddings_schedule",
    "labels_changed",
    "machine_labels_accept",
    "machine_labels_undo",
    "training_run_request",
]

CONFIG_FIELDS = {
    "model_kind",
    "sampling",
    "enabled",
    "retrain_every_n_labels",
    "deep_every_n_labels",
    "min_labels",
    "qc_share",
    "holdout_share",
    "max_gold_eval",
    "train_on_machine_labels",
    "aggregation",
    "hyperparams",
    "seed",
}


@transaction.atomic
def config_update(*, project: Project, **fields) -> ProjectTrainingConfig:
    unknown = set(fields) - CONFIG_FIELDS
    if unknown:
        raise ValidationFailed(f"These training settings do not exist: {', '.join(sorted(unknown))}.")
    if "hyperparams" in fields:
        known = {f.name for f in dataclass_fields(HyperParams)} - HyperParams.NOT_SETTABLE
        extra = set(fields["hyperparams"] or {}) - known
        if extra:
            raise ValidationFailed(
                f"Unknown hyper-parameters: {', '.join(sorted(extra))}; use {', '.join(sorted(known))}."
            )
    if fields.get("aggregation") == Aggregation.DAWID_SKENE and project.label_mode != Project.LabelMode.SINGLE:
        raise ValidationFailed(
            "Dawid-Skene aggregates single-label projects only; this project takes several labels per text.",
            code="aggregation_single_label_only",
        )
    config = ProjectTrainingConfig.objects.select_for_update().get(pk=config_get(project_id=project.pk).pk)
    for name, value in fields.items():
        setattr(config, name, value)
    try:
        config.full_clean()
    except DjangoValidationError as exc:  # a domain error (400), not a server error
        raise ValidationFailed("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
    _check_memory_budget(project=project, config=config)
    config.save()
    transaction.on_commit(lambda: debounce.invalidate(project.pk))  # the debounce re-reads it
    return config


def _check_memory_budget(*, project: Project, config: ProjectTrainingConfig) -> None:
    """Refuse settings whose largest model (training.memory) would not fit a worker's budget."""
    try:
        params = HyperParams(**{k: v for k, v in (config.hyperparams or {}).items() if k != "seed"})
    except TypeError as exc:
        raise ValidationFailed(f"Hyper-parameters: {exc}.") from exc
    kind, need = memory.largest(params, n_classes=project.labels.count())
    budget_mb = settings.TALLY_TRAINING_MEMORY_BUDGET_MB
    if need > budget_mb * 1024 * 1024:
        raise ValidationFailed(
            f"These hyper-parameters need about {memory.human(need)} to train the {kind} model with its "
            f"optimiser state; the limit is {budget_mb} MB (TALLY_TRAINING_MEMORY_BUDGET_MB). "
            "Lower buckets, dim, hidden, batch_size or max_length.",
            code="over_memory_budget",
        )


# --- queueing runs: the debounce ----------------------------------------------------------


def _enqueue(run_id: int) -> None:
    """Ring the doorbell for a run (after commit): training.tasks.enqueue_run."""
    tasks.enqueue_run(run_id)


def _queue_run(
    *, project_id: int, loop: str, trigger: str, requested_by=None, first_event_at: datetime | None = None
) -> tuple[TrainingRun, bool]:
    """(the project's queued run, created?): training.runs.run_queue, and the doorbell rung
    after commit when it says so."""
    run, created, ring = runs.run_queue(
        project_id=project_id, loop=loop, trigger=trigger, requested_by=requested_by, first_event_at=first_event_at
    )
    if ring:
        transaction.on_commit(lambda: _enqueue(run.pk))
    return run, created


def labels_changed_after_commit(event: annotation_hooks.LabelsChanged) -> None:
    """annotation's `labels_changed` hook: count the change once the labels are committed."""
    transaction.on_commit(lambda: labels_changed(project_id=event.project_id, label_ids=event.label_ids))


def labels_changed(*, project_id: int, label_ids: Sequence[int] | None = None) -> None:
    """New, retracted or rejected labels in a project, committed: queue a retraining run,
    debounced. Counted in Redis (training.debounce): most events stop there, with no database
    statement (the hot path, issue 18); the database decides when a run is due, when Redis has
    no state for the project, when the labels may have become enough for a first model, and
    when Redis cannot be reached (then a run is queued, or the queued one kept, as if
    `retrain_every_n_labels` were 1). `label_ids`: the labels the event added, when known."""
    verdict = debounce.count(project_id, label_ids)
    if verdict is not None and verdict.action == "skip":
        return
    try:
        _labels_changed_in_db(project_id, verdict)
    except Exception:
        if verdict is not None and verdict.action in ("queue", "deep"):
            debounce.release(project_id)  # the flag it set promises a run that was not queued
        raise


def _labels_changed_in_db(project_id: int, verdict: debounce.Verdict | None) -> None:
    """The debounce's decision from the database: the config and, before a first model, the
    labels (`enough_labels`); the run queued if due; the state kept in Redis for the next events."""
    with transaction.atomic():
        config = config_get(project_id=project_id)
        ready, need, classes = True, 0, []
        if config.current_version_id is None:
            rows, classes = selectors.labels_readiness(project_id=project_id, min_labels=config.min_labels)
            need = config.min_labels - rows
            ready = need <= 0 and len(classes) >= 2
        deep_n = config.deep_every_n_labels if config.model_kind == ModelKind.MINILM else 0
        counted = 1 if verdict is None or verdict.action == "fill" else verdict.count
        if verdict is None or verdict.action in ("queue", "deep"):
            due = True
        else:  # fill (this event is the first counted), check
            due = counted >= config.retrain_every_n_labels
        deep = verdict is not None and verdict.action == "deep"
        queue = config.enabled and ready and due
        if queue:
            _queue_run(
                project_id=project_id,
                loop=Loop.DEEP if deep else Loop.FAST,
                trigger=TrainingRun.Trigger.SCHEDULE if deep else TrainingRun.Trigger.LABELS,
            )
    if verdict is None:
        return
    if verdict.action in ("queue", "deep"):
        if not queue:  # Redis's state was stale (training turned off, labels retracted): read it again
            debounce.release(project_id)
        return
    debounce.store(
        project_id,
        verdict.gen,
        enabled=config.enabled,
        n=config.retrain_every_n_labels,
        deep_n=deep_n,
        ready=ready,
        need=max(need, 0),
        classes=classes,
        counted=0 if queue else counted,
        deep=1 if verdict.action == "fill" else 0,
        pending=queue,
    )


@transaction.atomic
def training_run_request(*, project: Project, requested_by, loop: str = Loop.FAST) -> TrainingRun:
    """An admin asks for a run. Raises Conflict (carrying the queued run) when one is queued
    already and this request adds nothing to it."""
    config = config_get(project_id=project.pk)
    if loop == Loop.DEEP and config.model_kind != ModelKind.MINILM:
        raise ValidationFailed("The deep loop fine-tunes MiniLM: set the project's model kind to 'minilm' first.")
    existing = TrainingRun.objects.filter(project=project, status=TrainingRun.Status.QUEUED).first()
    upgrade = existing is not None and loop == Loop.DEEP and existing.loop == Loop.FAST
    run, created = _queue_run(
        project_id=project.pk, loop=loop, trigger=TrainingRun.Trigger.ADMIN, requested_by=requested_by
    )
    if not created and not upgrade:
        error = Conflict(f"Run {run.pk} is already queued for this project.", code="run_already_queued")
        error.run = run
        raise error
    if loop == Loop.DEEP:
        transaction.on_commit(lambda: debounce.deep_reset(project.pk))
    return run


def examples_imported_after_commit(event: annotation_hooks.ExamplesImported) -> None:
    """annotation's `examples_imported` hook: once the imported rows are committed, send one
    message and nothing else. The work (the pool's embedding dispatch, which reads every
    example's id, and the cold start's order) runs in that task on a worker, not in the
    importing process: done here it was three quarters of a 500-row import's time (issue 18)."""
    transaction.on_commit(lambda: tasks.enqueue_cold_start(event.project_id))


# --- machine labels ---------------------------------------------------------------------


@transaction.atomic
def machine_labels_accept(
    *,
    project: Project,
    admin,
    min_confidence: float,
    label_ids: Sequence[int] | None = None,
    example_ids: Sequence[int] | None = None,
    limit: int = 1000,
    expected_version_id: int | None = None,
    now: datetime | None = None,
) -> AcceptBatch:
    """Accept the current version's label for unlabeled examples predicted with at least
    `min_confidence`. Each becomes an Annotation with source=machine, the acting admin as its
    annotator and no attempt: no labor, no pay, and it does not count toward the overlap.
    Predictions of a retired label are never accepted. The batch is recorded (AcceptBatch:
    who, when, threshold, version, its labels) so that machine_labels_undo can reverse it;
    a batch that took nothing is recorded too (it is what the admin asked for). With
    `expected_version_id` (the version a preview showed), a newer current version refuses it:
    its predictions are not the ones previewed."""
    now = now or timezone.now()
    if not 0.0 <= min_confidence <= 1.0:
        raise ValidationFailed("min_confidence must be between 0 and 1.")
    if project.label_mode != Project.LabelMode.SINGLE:
        raise ValidationFailed("Machine labels are offered for single-label projects only.")
    if not 1 <= limit <= 10_000:
        raise ValidationFailed("limit must be between 1 and 10000.")
    config = ProjectTrainingConfig.objects.select_for_update().filter(project=project).first()
    if config is None or config.current_version_id is None:
        raise Conflict("There is no trained model for this project yet.", code="no_model")
    if expected_version_id is not None and config.current_version_id != expected_version_id:
        raise Conflict(
            "A newer model version is current since the preview: preview again before accepting.",
            code="version_changed",
        )
    qs = selectors.acceptable_predictions(project=project, min_confidence=min_confidence, label_ids=label_ids)
    if example_ids is not None:
        qs = qs.filter(example_id__in=example_ids)
    picks = list(qs.order_by("-confidence", "example_id").values_list("example_id", "label_id")[:limit])
    annotations = Annotation.objects.bulk_create(
        Annotation(
            project=project,
            example_id=ex,
            annotator=admin,
            attempt=None,
            status=Annotation.Status.ACCEPTED,
            source=Annotation.Source.MACHINE,
            created_at=now,
        )
        for ex, _ in picks
    )
    Through = Annotation.labels.through
    Through.objects.bulk_create(
        Through(annotation_id=a.pk, label_id=lab) for a, (_, lab) in zip(annotations, picks, strict=True)
    )
    batch = AcceptBatch.objects.create(
        project=project,
        version_id=config.current_version_id,
        min_confidence=min_confidence,
        label_ids=sorted(label_ids or []),
        accepted=len(annotations),
        created_by=admin,
        created_at=now,
    )
    AcceptBatch.annotations.through.objects.bulk_create(
        AcceptBatch.annotations.through(acceptbatch_id=batch.pk, annotation_id=a.pk) for a in annotations
    )
    if annotations:
        transaction.on_commit(lambda: labels_changed(project_id=project.pk))
    batch.accepted_annotations = annotations
    return batch


@transaction.atomic
def machine_labels_undo(*, project: Project, batch_id: int, actor, now: datetime | None = None) -> AcceptBatch:
    """Undo a bulk accept: its machine labels still accepted become rejected, through
    annotation.services (each announced to the ledger, which pays nothing for machine labels;
    the change of labels queues a retraining as any other). The batch records who undid it and
    when; an undone batch stays undone (accept again for a new batch)."""
    now = now or timezone.now()
    batch = AcceptBatch.objects.select_for_update().filter(project=project, pk=batch_id).first()
    if batch is None:
        raise NotFound("No such bulk accept in this project.")
    if batch.undone_at is not None:
        raise Conflict(f"Bulk accept {batch.pk} was undone already.", code="already_undone")
    live = list(
        batch.annotations.select_for_update()
        .filter(status=Annotation.Status.ACCEPTED, source=Annotation.Source.MACHINE)
        .order_by("id")
    )
    batch.undone = annotation_services.annotations_set_status(
        annotations=live,
        status=Annotation.Status.REJECTED,
        actor=actor,
        reason=f"Bulk accept {batch.pk} undone",
        now=now,
    )
    batch.undone_at = now
    batch.undone_by = actor
    batch.save(update_fields=["undone", "undone_at", "undone_by"])
    return batch
