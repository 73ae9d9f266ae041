"""Writes for the training domain. Imported by the web process: never import torch here.

The worker's side of a run (reading the snapshot, fitting, scoring) lives in
training/pipeline.py and calls the writes below: claiming a run, registering its version,
writing the pool's predictions and queue priorities.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, Max, OuterRef, Q
from django.utils import timezone

from annotation import hooks as annotation_hooks
from annotation.models import Annotation, Example, Project
from core.errors import Conflict, ValidationFailed

from . import hooks
from .models import (
    ExampleEmbedding,
    Loop,
    ManifestEntry,
    ModelKind,
    ModelVersion,
    Prediction,
    ProjectTrainingConfig,
    TrainingRun,
)

logger = logging.getLogger(__name__)

# A queued run nobody claimed for this long gets its doorbell rung again (lost message).
REENQUEUE_AFTER = timedelta(seconds=60)
MAX_ATTEMPTS = 3
WRITE_CHUNK = 2000
PRIORITY_CHUNK = 5000
# A prediction is rewritten only when its label changes or its confidence or margin moves by
# more than this: its `version` is the version that last changed it (most rows barely move
# from one label to the next, and rewriting 100,000 rows per run would cost seconds).
PREDICTION_TOLERANCE = 0.005
# The first queue positions a run writes (in one transaction) before the rest of the pool.
QUEUE_HEAD = 1000


def config_get(*, project_id: int) -> ProjectTrainingConfig:
    config, _ = ProjectTrainingConfig.objects.get_or_create(project_id=project_id)
    return config


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
    "hyperparams",
    "seed",
}


@transaction.atomic
def config_update(*, project: Project, **fields) -> ProjectTrainingConfig:
    unknown = set(fields) - CONFIG_FIELDS
    if unknown:
        raise ValidationFailed(f"These training settings do not exist: {', '.join(sorted(unknown))}.")
    if "hyperparams" in fields:
        from dataclasses import fields as dataclass_fields

        from .ml.classifiers import HyperParams

        known = {f.name for f in dataclass_fields(HyperParams)} - {"seed"}
        extra = set(fields["hyperparams"] or {}) - known
        if extra:
            raise ValidationFailed(
                f"Unknown hyper-parameters: {', '.join(sorted(extra))}; use {', '.join(sorted(known))}."
            )
    config = ProjectTrainingConfig.objects.select_for_update().get(pk=config_get(project_id=project.pk).pk)
    for name, value in fields.items():
        setattr(config, name, value)
    try:
        config.full_clean()
    except DjangoValidationError as exc:  # a domain error (400), not a server error
        raise ValidationFailed("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
    config.save()
    return config


# --- queueing runs: the debounce ----------------------------------------------------------


def _enqueue(run_id: int) -> None:
    """Ring the doorbell (after commit). The run row is the job; a lost message is re-sent."""
    from .tasks import run_training

    try:
        run_training.delay(run_id)
    except Exception:  # the broker is down: the row stays queued and the next label re-sends
        logger.exception("Could not enqueue training run %s", run_id)
        return
    TrainingRun.objects.filter(pk=run_id).update(enqueued_at=timezone.now())


def _queue_run(
    *, project_id: int, loop: str, trigger: str, requested_by=None, first_event_at: datetime | None = None
) -> tuple[TrainingRun, bool]:
    """(the project's queued run, created?). At most one run per project is queued (a partial
    unique index says so); a RUNNING run does not count, so labels arriving during a run queue
    the next one. A deep request upgrades a queued fast run."""
    now = timezone.now()
    queued = (
        TrainingRun.objects.select_for_update().filter(project_id=project_id, status=TrainingRun.Status.QUEUED).first()
    )
    if queued is not None:
        if loop == Loop.DEEP and queued.loop == Loop.FAST:
            queued.loop = Loop.DEEP
            queued.save(update_fields=["loop"])
        if queued.enqueued_at is None or queued.enqueued_at < now - REENQUEUE_AFTER:
            transaction.on_commit(lambda: _enqueue(queued.pk))
        return queued, False
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                project_id=project_id,
                loop=loop,
                trigger=trigger,
                requested_by=requested_by,
                first_event_at=first_event_at or now,
            )
    except IntegrityError:  # another process queued one between our read and insert
        return TrainingRun.objects.get(project_id=project_id, status=TrainingRun.Status.QUEUED), False
    transaction.on_commit(lambda: _enqueue(run.pk))
    return run, True


def runs_resend_lost(*, now: datetime | None = None) -> list[int]:
    """The sweeper (training.tasks.sweep_lost_runs, every TALLY_TRAINING_SWEEP_SECONDS): ring
    the doorbell again for every run whose message the broker may have lost -- a QUEUED run
    not (re)sent for TALLY_TRAINING_RESEND_AFTER_SECONDS (Redis restarted without its AOF, a
    purge, a failed send), and a RUNNING run whose lease ran out (its worker died and the
    message went with it; the claim takes it over, or fails it after MAX_ATTEMPTS). A message
    that was not lost after all is harmless: a run is claimed by one conditional UPDATE, so
    the duplicate finds it taken or finished and returns. Returns the runs re-sent."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.TALLY_TRAINING_RESEND_AFTER_SECONDS)
    stale = Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True, created_at__lt=cutoff)
    lost = list(
        TrainingRun.objects.filter(
            Q(status=TrainingRun.Status.QUEUED) | Q(status=TrainingRun.Status.RUNNING, lease_expires_at__lt=now)
        )
        .filter(stale)
        .order_by("id")
        .values_list("pk", flat=True)
    )
    for run_id in lost:
        _enqueue(run_id)
    if lost:
        logger.warning("Re-sent %d training run(s) whose message may have been lost: %s", len(lost), lost)
    return lost


def labels_changed_after_commit(event: annotation_hooks.LabelsChanged) -> None:
    """annotation's `labels_changed` hook: count the change once the labels are committed."""
    transaction.on_commit(lambda: labels_changed(project_id=event.project_id))


def labels_changed(*, project_id: int) -> None:
    """New, retracted or rejected labels in a project, committed: queue a retraining run, debounced."""
    with transaction.atomic():
        config = ProjectTrainingConfig.objects.select_for_update().filter(project_id=project_id).first()
        if config is None:  # a project from before training configs existed
            config_get(project_id=project_id)
            config = ProjectTrainingConfig.objects.select_for_update().get(project_id=project_id)
        config.label_events_since_queued += 1
        config.label_events_since_deep += 1
        fields = ["label_events_since_queued", "label_events_since_deep"]
        if not config.enabled or config.label_events_since_queued < config.retrain_every_n_labels:
            config.save(update_fields=fields)
            return
        if config.current_version_id is None and not _enough_labels(project_id, config.min_labels):
            config.save(update_fields=fields)
            return
        deep = (
            config.model_kind == ModelKind.MINILM
            and config.deep_every_n_labels
            and config.label_events_since_deep >= config.deep_every_n_labels
        )
        _, created = _queue_run(
            project_id=project_id,
            loop=Loop.DEEP if deep else Loop.FAST,
            trigger=TrainingRun.Trigger.SCHEDULE if deep else TrainingRun.Trigger.LABELS,
        )
        config.label_events_since_queued = 0
        if deep:
            config.label_events_since_deep = 0
        config.save(update_fields=fields)


def _enough_labels(project_id: int, min_labels: int) -> bool:
    """Before the first version: at least `min_labels` accepted labels over two labels or more."""
    accepted = Annotation.labels.through.objects.filter(
        annotation__project_id=project_id, annotation__status=Annotation.Status.ACCEPTED
    )
    # Bounded counts: this runs after every label until the first version exists.
    return accepted[:min_labels].count() >= min_labels and accepted.values("label_id").distinct()[:2].count() >= 2


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
        ProjectTrainingConfig.objects.filter(pk=config.pk).update(label_events_since_deep=0)
    return run


# --- a run's life: claim, fail, register ------------------------------------------------


def run_claim(
    *, run_id: int, task_id: str = "", worker: str = "", redelivered: bool = False, now: datetime | None = None
) -> TrainingRun | None:
    """Claim a run for this worker with one conditional UPDATE; None if someone else has it or
    it is finished. A RUNNING run is taken over only if its lease ran out, or if this very
    message is being redelivered (its first consumer died: acks_late + reject_on_worker_lost)."""
    now = now or timezone.now()
    token = str(uuid.uuid4())
    lease = now + timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    takeover = Q(status=TrainingRun.Status.RUNNING, lease_expires_at__lt=now)
    if redelivered and task_id:
        takeover |= Q(status=TrainingRun.Status.RUNNING, celery_task_id=task_id)
    claimed = (
        TrainingRun.objects.filter(pk=run_id, attempts__lt=MAX_ATTEMPTS)
        .filter(Q(status=TrainingRun.Status.QUEUED) | takeover)
        .update(
            status=TrainingRun.Status.RUNNING,
            claim_token=token,
            claimed_by=worker[:200],
            celery_task_id=task_id[:64],
            started_at=now,
            lease_expires_at=lease,
            attempts=F("attempts") + 1,
            stage="starting",
            error="",
        )
    )
    if not claimed:
        stuck = TrainingRun.objects.filter(
            pk=run_id, status=TrainingRun.Status.RUNNING, attempts__gte=MAX_ATTEMPTS, lease_expires_at__lt=now
        )
        stuck.update(
            status=TrainingRun.Status.FAILED,
            finished_at=now,
            error=f"Gave up after {MAX_ATTEMPTS} attempts: the workers running it were lost.",
        )
        return None
    return TrainingRun.objects.get(pk=run_id)


def run_progress(*, run: TrainingRun, stage: str, **progress) -> None:
    """Show where a run is (only while it is still ours)."""
    run.stage = stage
    run.progress = {**run.progress, **progress}
    with transaction.atomic():
        _no_fsync_wait()  # display-only: a crash may lose the last progress note, nothing else
        TrainingRun.objects.filter(pk=run.pk, claim_token=run.claim_token, status=TrainingRun.Status.RUNNING).update(
            stage=stage, progress=run.progress
        )


def _no_fsync_wait() -> None:
    """Inside a transaction that writes only derived or display data: commit without waiting
    for the WAL flush (PostgreSQL `synchronous_commit = off`; durable a moment later)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit TO OFF")


def run_fail(*, run: TrainingRun, error: str) -> bool:
    now = timezone.now()
    return bool(
        TrainingRun.objects.filter(pk=run.pk, claim_token=run.claim_token, status=TrainingRun.Status.RUNNING).update(
            status=TrainingRun.Status.FAILED, finished_at=now, error=error[:5000], stage="failed"
        )
    )


@transaction.atomic
def version_register(
    *,
    run: TrainingRun,
    snapshot,
    kind: str,
    hyperparams: dict,
    encoder_key: str,
    device: str,
    device_name: str,
    timings: dict,
    metrics: dict,
    weights_path: str,
    weights_sha256: str,
    loop: str | None = None,
) -> tuple[ModelVersion | None, bool]:
    """Register the run's one version with its manifest, and finish the run. Returns
    (version, promoted). (None, False) if the run is no longer ours (fenced out).

    Promotion: the version becomes current only if no newer run has produced the current one.
    """
    from .selectors import manifest_hash

    locked = (
        TrainingRun.objects.select_for_update()
        .filter(pk=run.pk, claim_token=run.claim_token, status=TrainingRun.Status.RUNNING)
        .first()
    )
    if locked is None or ModelVersion.objects.filter(run_id=run.pk).exists():
        return None, False
    config = ProjectTrainingConfig.objects.select_for_update().get(project_id=run.project_id)
    sequence = (ModelVersion.objects.filter(project_id=run.project_id).aggregate(m=Max("sequence"))["m"] or 0) + 1
    parent = config.current_version
    version = ModelVersion(
        project_id=run.project_id,
        sequence=sequence,
        parent=parent,
        run=locked,
        kind=kind,
        loop=loop or locked.loop,
        hyperparams=hyperparams,
        classes=snapshot.label_ids,
        encoder_key=encoder_key,
        device=device,
        device_name=device_name[:200],
        embedding_seconds=timings.get("embedding", 0.0),
        training_seconds=timings.get("training", 0.0),
        scoring_seconds=timings.get("scoring", 0.0),
        metrics=metrics,
        n_annotations=len({a for a, _, _ in snapshot.manifest}),
        n_examples=len(snapshot.train_example_ids),
        n_annotators=snapshot.n_annotators,
        manifest_hash=manifest_hash(snapshot.manifest),
        weights_path=weights_path,
        weights_sha256=weights_sha256,
        snapshot_at=snapshot.taken_at,
    )
    version.full_clean(exclude=["parent", "run"])
    version.save()
    _manifest_insert(version, snapshot.manifest)
    now = timezone.now()
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.SUCCEEDED, finished_at=now, stage="done")
    promoted = parent is None or parent.run_id < run.pk
    if promoted:
        config.current_version = version
        if version.loop == Loop.DEEP and encoder_key:
            config.encoder_key = encoder_key
        config.save(update_fields=["current_version", "encoder_key", "updated_at"])
    registered = hooks.VersionRegistered(version_id=version.pk, project_id=version.project_id)
    transaction.on_commit(lambda: hooks.version_registered.send(registered))
    return version, promoted


def _manifest_insert(version: ModelVersion, entries: Sequence[tuple[int, int, int]]) -> None:
    if connection.vendor == "postgresql" and entries:
        annotation_ids, example_ids, label_ids = (list(col) for col in zip(*entries, strict=True))
        with connection.cursor() as cur:
            cur.execute(
                f"""
                INSERT INTO {ManifestEntry._meta.db_table} (version_id, annotation_id, example_id, label_id)
                SELECT %s, a, e, lab FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS v(a, e, lab)
                """,  # noqa: S608 (table name from the model, values bound)
                [version.pk, annotation_ids, example_ids, label_ids],
            )
        return
    ManifestEntry.objects.bulk_create(
        (ManifestEntry(version=version, annotation_id=a, example_id=e, label_id=lab) for a, e, lab in entries),
        batch_size=5000,
    )


# --- predictions and the queue ----------------------------------------------------------


def _still_current(project_id: int, version_id: int) -> bool:
    return (
        ProjectTrainingConfig.objects.select_for_update()
        .filter(project_id=project_id, current_version_id=version_id)
        .exists()
    )


def _write_chunks(version: ModelVersion, n: int, chunk: int, write) -> bool:
    """Run `write(slice)` in short transactions, each first checking (under the config row's
    lock) that `version` is still current: annotators never wait long on a locked row, and an
    older version never overwrites a newer one's rows. These rows are derived data, recomputed
    by every run, so their commits need not wait for the disk (synchronous_commit off)."""
    for start in range(0, n, chunk):
        with transaction.atomic():
            _no_fsync_wait()
            if not _still_current(version.project_id, version.pk):
                return False
            write(slice(start, start + chunk))
    return True


def queue_positions(*, version: ModelVersion, priorities: np.ndarray) -> np.ndarray:
    """A version's ranking (in (0, 1] for claimable examples, 0 for the rest) lifted by
    2 x its sequence, so that any position it writes outranks every position an older
    version wrote."""
    prio = np.asarray(priorities, dtype=np.float64)
    return np.where(prio > 0, prio + 2.0 * version.sequence, 0.0)


def priorities_write(
    *, version: ModelVersion, example_ids: Sequence[int], priorities: np.ndarray, head: int | None = None
) -> bool:
    """Set Example.priority (the queue order) from `queue_positions`. With `head`, only the
    `head` best positions, in one short transaction: thanks to the lift they already lead the
    queue, so annotators get the new order at once while the rest of the pool may follow
    later. Without it, every row, in chunks (rows already right are skipped). False if a newer
    version took over (it writes its own)."""
    ids = np.asarray(example_ids, dtype=np.int64)
    prio = queue_positions(version=version, priorities=priorities)
    if head is not None:
        top = np.argsort(-prio, kind="stable")[:head]
        top = top[prio[top] > 0]
        ids, prio = ids[top], prio[top]
    order = np.argsort(ids)  # rows are locked in id order
    ids, prio = ids[order], prio[order]
    chunk = max(len(ids), 1) if head is not None else PRIORITY_CHUNK
    return _write_chunks(version, len(ids), chunk, lambda sl: _update_priorities(ids[sl], prio[sl]))


def predictions_write(
    *,
    version: ModelVersion,
    example_ids: Sequence[int],
    probs: np.ndarray,
    margins: np.ndarray,
    entropies: np.ndarray,
) -> bool:
    """Upsert each example's prediction (label, confidence, margin, entropy) under `version`."""
    now = timezone.now()
    order = np.argsort(np.asarray(example_ids))
    ids = np.asarray(example_ids, dtype=np.int64)[order]
    classes = np.asarray(version.classes, dtype=np.int64)
    label_ids = classes[probs[order].argmax(1)] if len(ids) else np.zeros(0, np.int64)
    conf = probs[order].max(1) if len(ids) else np.zeros(0)
    margins, entropies = np.asarray(margins)[order], np.asarray(entropies)[order]
    return _write_chunks(
        version,
        len(ids),
        WRITE_CHUNK,
        lambda sl: _upsert_predictions(version, ids[sl], label_ids[sl], conf[sl], margins[sl], entropies[sl], now),
    )


def _upsert_predictions(version, ids, label_ids, conf, margins, entropies, now) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                f"""
                INSERT INTO {Prediction._meta.db_table}
                    (example_id, project_id, version_id, label_id, confidence, margin, entropy, updated_at)
                SELECT v.example_id, %s, %s, v.label_id, v.confidence, v.margin, v.entropy, %s
                FROM unnest(%s::bigint[], %s::bigint[], %s::float8[], %s::float8[], %s::float8[])
                    AS v(example_id, label_id, confidence, margin, entropy)
                ON CONFLICT (example_id) DO UPDATE SET
                    version_id = EXCLUDED.version_id, label_id = EXCLUDED.label_id,
                    confidence = EXCLUDED.confidence, margin = EXCLUDED.margin,
                    entropy = EXCLUDED.entropy, updated_at = EXCLUDED.updated_at
                WHERE {Prediction._meta.db_table}.label_id <> EXCLUDED.label_id
                    OR abs({Prediction._meta.db_table}.confidence - EXCLUDED.confidence) > %s
                    OR abs({Prediction._meta.db_table}.margin - EXCLUDED.margin) > %s
                """,  # noqa: S608 (table name from the model, values bound)
                [
                    version.project_id,
                    version.pk,
                    now,
                    ids.tolist(),
                    label_ids.tolist(),
                    conf.astype(float).tolist(),
                    margins.astype(float).tolist(),
                    entropies.astype(float).tolist(),
                    PREDICTION_TOLERANCE,
                    PREDICTION_TOLERANCE,
                ],
            )
        return
    Prediction.objects.bulk_create(
        [
            Prediction(
                example_id=int(e),
                project_id=version.project_id,
                version=version,
                label_id=int(lab),
                confidence=float(c),
                margin=float(m),
                entropy=float(h),
                updated_at=now,
            )
            for e, lab, c, m, h in zip(ids, label_ids, conf, margins, entropies, strict=True)
        ],
        update_conflicts=True,
        unique_fields=["example"],
        update_fields=["version", "label", "confidence", "margin", "entropy", "updated_at"],
    )


def _update_priorities(ids: np.ndarray, priorities: np.ndarray) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                f"""
                UPDATE {Example._meta.db_table} AS e SET priority = v.priority
                FROM unnest(%s::bigint[], %s::float8[]) AS v(id, priority)
                WHERE e.id = v.id AND e.priority IS DISTINCT FROM v.priority
                """,  # noqa: S608
                [ids.tolist(), priorities.astype(float).tolist()],
            )
        return
    Example.objects.bulk_update(
        [Example(pk=int(i), priority=float(p)) for i, p in zip(ids, priorities, strict=True)], ["priority"]
    )


# --- embeddings -------------------------------------------------------------------------


def embeddings_store(*, project_id: int, encoder_key: str, example_ids: Sequence[int], vectors: np.ndarray) -> int:
    """Cache float32 vectors; an example already embedded with this encoder is left alone."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    created = ExampleEmbedding.objects.bulk_create(
        (
            ExampleEmbedding(example_id=int(e), project_id=project_id, encoder_key=encoder_key, vector=v.tobytes())
            for e, v in zip(example_ids, vectors, strict=True)
        ),
        batch_size=1000,
        ignore_conflicts=True,
    )
    return len(created)


def embeddings_schedule(*, project: Project, encoder_key: str | None = None) -> int:
    """Embed, in the background, every example of the project not cached yet for the encoder,
    in chunks of TALLY_EMBED_CHUNK_SIZE (one Celery task each, so several workers share them).
    Returns the number of chunks sent; 0 if all are cached or a dispatch is under way."""
    from .ml.encoder import ENCODER_KEY
    from .tasks import embed_chunk

    config = config_get(project_id=project.pk)
    if config.model_kind != ModelKind.MINILM:
        return 0
    key = encoder_key or config.encoder_key or ENCODER_KEY
    missing = list(
        Example.objects.filter(project=project)
        .exclude(Exists(ExampleEmbedding.objects.filter(example=OuterRef("pk"), encoder_key=key)))
        .order_by("id")
        .values_list("id", flat=True)
    )
    if not missing:
        return 0
    # One dispatch at a time per project and encoder (the chunks themselves are idempotent).
    if not cache.add(f"training:embed-dispatch:{project.pk}:{key}", 1, timeout=120):
        return 0
    size = settings.TALLY_EMBED_CHUNK_SIZE
    chunks = [missing[i : i + size] for i in range(0, len(missing), size)]
    for chunk in chunks:
        embed_chunk.delay(project.pk, key, chunk)
    return len(chunks)


def examples_imported(*, project_id: int) -> None:
    """Hook for the import pipeline: start embedding new examples in the background."""
    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        embeddings_schedule(project=project)


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
    now: datetime | None = None,
) -> list[Annotation]:
    """Accept the current version's label for unlabeled examples predicted with at least
    `min_confidence`. Each becomes an Annotation with source=machine, the acting admin as its
    annotator and no attempt: no labor, no pay, and it does not count toward the overlap."""
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
    qs = Prediction.objects.filter(project=project, confidence__gte=min_confidence)
    if label_ids:
        qs = qs.filter(label_id__in=label_ids)
    if example_ids is not None:
        qs = qs.filter(example_id__in=example_ids)
    qs = qs.exclude(
        Exists(Annotation.objects.filter(example=OuterRef("example_id"), status=Annotation.Status.ACCEPTED))
    )
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
    if annotations:
        transaction.on_commit(lambda: labels_changed(project_id=project.pk))
    return annotations


def embeddings_done(*, project_id: int) -> None:
    """The pool's last missing embeddings arrived: queue a run to score them (once the project
    has a model, or the labels for a first one)."""
    config = config_get(project_id=project_id)
    if config.current_version_id is None and not _enough_labels(project_id, config.min_labels):
        return
    with transaction.atomic():
        _queue_run(project_id=project_id, loop=Loop.FAST, trigger=TrainingRun.Trigger.EMBEDDINGS)
