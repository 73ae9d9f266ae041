"""The worker's writes for one run: the run row's life (queued, claimed, progress, failed),
its registered version, and what a version leaves behind (queue positions, predictions,
cached embeddings). Called by training.pipeline (the worker's run steps) and, for queueing a
run row, by training.services and training.tasks, which ring the doorbell after commit.

The bottom of the training app's own modules: imports run services -> tasks -> pipeline ->
featurizers -> worker_cache -> runs, never back up (tests/training/test_layers.py). Imported by
the web process too: never import torch here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from annotation.models import Example

from . import debounce, hooks
from .models import (
    EmbeddingCache,
    EmbeddingWork,
    ExampleEmbedding,
    Loop,
    ManifestEntry,
    ModelVersion,
    Prediction,
    ProjectTrainingConfig,
    TrainingRun,
)
from .selectors import manifest_hash

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


class TrainingRefused(Exception):
    """The run cannot train (not enough labels, unsupported project): fail it with this message."""


def config_get(*, project_id: int) -> ProjectTrainingConfig:
    """The project's training config, created with the defaults if it has none yet."""
    config, _ = ProjectTrainingConfig.objects.get_or_create(project_id=project_id)
    return config


# --- queueing a run row -----------------------------------------------------------------


def run_queue(
    *, project_id: int, loop: str, trigger: str, requested_by=None, first_event_at: datetime | None = None
) -> tuple[TrainingRun, bool, bool]:
    """(the project's queued run, created?, ring?). At most one run per project is queued (a
    partial unique index says so); a RUNNING run does not count, so labels arriving during a
    run queue the next one. A deep request upgrades a queued fast run. `ring`: the caller
    must ring the doorbell after commit (a new run, or a queued one not sent for
    REENQUEUE_AFTER); this module sends no messages. Call it inside a transaction."""
    now = timezone.now()
    queued = (
        TrainingRun.objects.select_for_update().filter(project_id=project_id, status=TrainingRun.Status.QUEUED).first()
    )
    if queued is not None:
        if loop == Loop.DEEP and queued.loop == Loop.FAST:
            queued.loop = Loop.DEEP
            queued.save(update_fields=["loop"])
        return queued, False, queued.enqueued_at is None or queued.enqueued_at < now - REENQUEUE_AFTER
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
        return TrainingRun.objects.get(project_id=project_id, status=TrainingRun.Status.QUEUED), False, False
    return run, True, True


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
    run = TrainingRun.objects.get(pk=run_id)
    # No longer queued: labels from now on queue the next run. Cleared before the run reads the
    # labels, so a label that still found the flag set is in this run's snapshot.
    debounce.run_started(run.project_id)
    # Keep our own token: re-reading the row could already show the token of a worker that
    # took the run over since, and then both would write (and fence on) the same claim.
    run.claim_token = token
    return run


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
    One transaction from the fenced lock to the promotion, so one function: most of its length
    is the version row's fields."""
    locked = (
        TrainingRun.objects.select_for_update()
        .filter(pk=run.pk, claim_token=run.claim_token, status=TrainingRun.Status.RUNNING)
        .first()
    )
    if locked is None or ModelVersion.objects.filter(run_id=run.pk).exists():
        return None, False
    config = ProjectTrainingConfig.objects.select_for_update().get(project_id=run.project_id)
    # The background chunks done since the last version under this encoder are this version's.
    open_work = (
        list(
            EmbeddingWork.objects.select_for_update()
            .filter(project_id=run.project_id, encoder_key=encoder_key, version__isnull=True)
            .values_list("pk", "seconds")
        )
        if encoder_key
        else []
    )
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
        pool_embedding_seconds=sum(seconds for _, seconds in open_work),
        metrics=metrics,
        n_annotations=len({a for a, _, _ in snapshot.manifest}),
        n_examples=len(snapshot.train_example_ids),
        n_annotators=snapshot.n_annotators,
        manifest_hash=manifest_hash(snapshot.manifest, snapshot.aggregation),
        aggregation=snapshot.aggregation,
        weights_path=weights_path,
        weights_sha256=weights_sha256,
        snapshot_at=snapshot.taken_at,
    )
    version.full_clean(exclude=["parent", "run"])
    version.save()
    _manifest_insert(version, snapshot.manifest)
    EmbeddingWork.objects.filter(pk__in=[pk for pk, _ in open_work]).update(version=version)
    now = timezone.now()
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.SUCCEEDED, finished_at=now, stage="done")
    promoted = parent is None or parent.run_id < run.pk
    if promoted:
        config.current_version = version
        if version.loop == Loop.DEEP and encoder_key:
            config.encoder_key = encoder_key
        config.save(update_fields=["current_version", "encoder_key", "updated_at"])
        if parent is None:  # the project's first model: the debounce stops asking for enough labels
            transaction.on_commit(lambda: debounce.invalidate(run.project_id))
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
    *,
    version: ModelVersion,
    example_ids: Sequence[int],
    priorities: np.ndarray,
    head: int | None = None,
    reasons: Sequence[str] | None = None,
) -> bool:
    """Set Example.priority (the queue order) from `queue_positions`. With `head`, only the
    `head` best positions, in one short transaction: thanks to the lift they already lead the
    queue, so annotators get the new order at once while the rest of the pool may follow
    later. Without it, every row, in chunks (rows already right are skipped). `reasons`: each
    position's reason code (Example.priority_reason). False if a newer version took over (it
    writes its own)."""
    ids = np.asarray(example_ids, dtype=np.int64)
    prio = queue_positions(version=version, priorities=priorities)
    why = np.asarray(reasons if reasons is not None else [""] * len(ids), dtype=object)
    why = np.where(prio > 0, why, "")
    if head is not None:
        top = np.argsort(-prio, kind="stable")[:head]
        top = top[prio[top] > 0]
        ids, prio, why = ids[top], prio[top], why[top]
    order = np.argsort(ids)  # rows are locked in id order
    ids, prio, why = ids[order], prio[order], why[order]
    chunk = max(len(ids), 1) if head is not None else PRIORITY_CHUNK
    return _write_chunks(version, len(ids), chunk, lambda sl: _update_priorities(ids[sl], prio[sl], why[sl]))


def cold_start_write(*, project_id: int, example_ids: Sequence[int], priorities: np.ndarray, reasons) -> bool:
    """The cold start's queue order (priorities in (0, 1]: below every position a version
    writes), in short transactions, each only while the project has no current version: a
    model's order always wins. False if a version became current meanwhile."""
    order = np.argsort(np.asarray(example_ids, dtype=np.int64))
    ids = np.asarray(example_ids, dtype=np.int64)[order]
    prio = np.asarray(priorities, dtype=np.float64)[order]
    why = np.asarray(reasons, dtype=object)[order]
    for start in range(0, len(ids), PRIORITY_CHUNK):
        sl = slice(start, start + PRIORITY_CHUNK)
        with transaction.atomic():
            _no_fsync_wait()
            config = ProjectTrainingConfig.objects.select_for_update().filter(project_id=project_id).first()
            if config is None or config.current_version_id is not None:
                return False
            _update_priorities(ids[sl], prio[sl], why[sl])
    return True


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


def _update_priorities(ids: np.ndarray, priorities: np.ndarray, reasons: np.ndarray) -> None:
    """`ids` sorted. The id range bounds the example rows read: without it PostgreSQL hash-joins
    the chunk against a scan of the whole example table, every chunk (at 1,000,000 examples,
    200 chunks each reading a million rows: most of the 167 s a full write took; issue 18)."""
    reasons = [str(r) for r in reasons]
    if not len(ids):
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                f"""
                UPDATE {Example._meta.db_table} AS e SET priority = v.priority, priority_reason = v.reason
                FROM unnest(%s::bigint[], %s::float8[], %s::varchar[]) AS v(id, priority, reason)
                WHERE e.id = v.id AND e.id BETWEEN %s AND %s
                    AND (e.priority IS DISTINCT FROM v.priority OR e.priority_reason IS DISTINCT FROM v.reason)
                """,  # noqa: S608
                [ids.tolist(), priorities.astype(float).tolist(), reasons, int(ids[0]), int(ids[-1])],
            )
        return
    Example.objects.bulk_update(
        [
            Example(pk=int(i), priority=float(p), priority_reason=r)
            for i, p, r in zip(ids, priorities, reasons, strict=True)
        ],
        ["priority", "priority_reason"],
    )


# --- embeddings -------------------------------------------------------------------------


def embeddings_store(
    *,
    project_id: int,
    encoder_key: str,
    example_ids: Sequence[int],
    vectors: np.ndarray,
    text_hashes: Sequence[str] | None = None,
) -> int:
    """Cache float32 vectors; an example already embedded with this encoder is left alone. With
    `text_hashes`, the vectors also go to the shared cache (EmbeddingCache) for other projects."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    created = ExampleEmbedding.objects.bulk_create(
        (
            ExampleEmbedding(example_id=int(e), project_id=project_id, encoder_key=encoder_key, vector=v.tobytes())
            for e, v in zip(example_ids, vectors, strict=True)
        ),
        batch_size=1000,
        ignore_conflicts=True,
    )
    if text_hashes is not None:
        EmbeddingCache.objects.bulk_create(
            (
                EmbeddingCache(encoder_key=encoder_key, text_hash=h, vector=v.tobytes())
                for h, v in zip(text_hashes, vectors, strict=True)
            ),
            batch_size=1000,
            ignore_conflicts=True,
        )
    return len(created)


def embeddings_stored(*, encoder_key: str, example_ids: Sequence[int]) -> set[int]:
    """The given examples already embedded under the encoder."""
    found: set[int] = set()
    for start in range(0, len(example_ids), WRITE_CHUNK):
        found.update(
            ExampleEmbedding.objects.filter(
                encoder_key=encoder_key, example_id__in=example_ids[start : start + WRITE_CHUNK]
            ).values_list("example_id", flat=True)
        )
    return found


def embeddings_reuse(*, project_id: int, encoder_key: str, example_ids: Sequence[int]) -> set[int]:
    """Copy the shared cache's vectors to the given examples whose text was embedded before
    (by any project) under the encoder. Returns the examples filled."""
    filled: set[int] = set()
    for start in range(0, len(example_ids), WRITE_CHUNK):
        hashes = dict(
            Example.objects.filter(pk__in=example_ids[start : start + WRITE_CHUNK]).values_list("id", "text_hash")
        )
        cached = dict(
            EmbeddingCache.objects.filter(encoder_key=encoder_key, text_hash__in=set(hashes.values())).values_list(
                "text_hash", "vector"
            )
        )
        rows = [(e, cached[h]) for e, h in hashes.items() if h in cached]
        ExampleEmbedding.objects.bulk_create(
            (ExampleEmbedding(example_id=e, project_id=project_id, encoder_key=encoder_key, vector=v) for e, v in rows),
            batch_size=1000,
            ignore_conflicts=True,
        )
        filled.update(e for e, _ in rows)
    return filled


def embedding_work_record(
    *, project_id: int, encoder_key: str, texts: int, seconds: float, device: str, device_name: str
) -> None:
    """A background chunk's compute, attributed to the next version registered (version_register)."""
    EmbeddingWork.objects.create(
        project_id=project_id,
        encoder_key=encoder_key,
        texts=texts,
        seconds=seconds,
        device=device,
        device_name=device_name[:200],
    )


def queue_head_ids(*, project, n: int, exclude: set[int] = frozenset()) -> list[int]:
    """The next `n` never-labeled examples the queue would hand out (annotation.queue's
    `-priority, id` order over example_fresh_queue_idx), besides `exclude`."""
    if n <= 0:
        return []
    ids = Example.objects.filter(project=project, submitted_count=0).order_by("-priority", "id")
    return [e for e in ids.values_list("id", flat=True)[: n + len(exclude)] if e not in exclude][:n]
