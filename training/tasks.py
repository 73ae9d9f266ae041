"""Celery tasks of the training app, and the doorbells that send them.

A task is a thin doorbell that calls training.pipeline; the functions above the tasks send
messages (a run's, embedding chunks') and re-send lost ones. Routed by config/settings'
CELERY_TASK_ROUTES: runs to the `training` queue, the pool's embedding chunks to their own
`embedding` queue (a run never queues behind the pool; a worker serving both takes runs first),
the on-demand explanation, the sweeper and the cold start's order to `default`. Imported by the
web process when it enqueues: nothing heavy is imported at module level (the pipeline imports
torch inside functions only).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone

from annotation.models import Annotation, Example, Project

from . import coldstart, pipeline, runs, selectors
from .ml.encoder import ENCODER_KEY
from .models import ExampleEmbedding, Loop, ModelKind, ModelVersion, ProjectTrainingConfig, TrainingRun

logger = logging.getLogger(__name__)

EXPLAIN_TTL = 24 * 3600


def explain_cache_key(version, example_id: int) -> str:
    """Keyed by the weights' hash too: a recreated database never meets a stale explanation."""
    return f"training:explain:{version.pk}:{version.weights_sha256[:16]}:{example_id}"


# --- doorbells --------------------------------------------------------------------------


def enqueue_run(run_id: int) -> None:
    """Ring the doorbell (after commit). The run row is the job; a lost message is re-sent."""
    try:
        run_training.delay(run_id)
    except Exception:  # the broker is down: the row stays queued and the next label re-sends
        logger.exception("Could not enqueue training run %s", run_id)
        return
    TrainingRun.objects.filter(pk=run_id).update(enqueued_at=timezone.now())


def runs_resend_lost(*, now: datetime | None = None) -> list[int]:
    """The sweeper (sweep_lost_runs, every TALLY_TRAINING_SWEEP_SECONDS): ring the doorbell
    again for every run whose message the broker may have lost -- a QUEUED run not (re)sent
    for TALLY_TRAINING_RESEND_AFTER_SECONDS (Redis restarted without its AOF, a purge, a
    failed send), and a RUNNING run whose lease ran out (its worker died and the message went
    with it; the claim takes it over, or fails it after MAX_ATTEMPTS). A message that was not
    lost after all is harmless: a run is claimed by one conditional UPDATE, so the duplicate
    finds it taken or finished and returns. Returns the runs re-sent."""
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
        enqueue_run(run_id)
    if lost:
        logger.warning("Re-sent %d training run(s) whose message may have been lost: %s", len(lost), lost)
    return lost


def _label_events_since(project_id: int, since, n: int) -> int:
    """How many of the project's labels were created or changed status after `since` (ever,
    when None), counted up to `n`: two walks of the (project, created_at) and partial
    (project, status_changed_at) indexes, each stopping at n, so an idle project of a million
    labels costs two index probes, not a scan of its labels."""
    labels = Annotation.objects.filter(project_id=project_id).order_by()
    if since is None:
        return labels[:n].count()
    created = labels.filter(created_at__gt=since).values_list("pk", flat=True)[:n]
    changed = labels.filter(status_changed_at__gt=since).values_list("pk", flat=True)[:n]
    return len(set(created) | set(changed))


def runs_catch_up() -> list[int]:
    """The debounce's safety net (with the sweeper, every TALLY_TRAINING_SWEEP_SECONDS): queue
    the run that labels committed while Redis lost its count, its state or a run's clear (a
    restart, a restored snapshot) or whose after-commit count never ran (a process died)
    would have queued. From the database alone: a project training automatically, with no run
    queued or running, whose label events (annotations created or changing status) since its
    latest run started -- or ever, before its first run -- reach `retrain_every_n_labels`,
    and, before a first model, with enough labels. Returns the runs queued."""
    busy = TrainingRun.objects.filter(
        project_id=OuterRef("project_id"), status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
    )
    last_start = Subquery(
        TrainingRun.objects.filter(project_id=OuterRef("project_id"), started_at__isnull=False)
        .order_by("-started_at")
        .values("started_at")[:1]
    )
    queued = []
    for config in (
        ProjectTrainingConfig.objects.filter(enabled=True).exclude(Exists(busy)).annotate(last_start=last_start)
    ):
        n = config.retrain_every_n_labels
        if _label_events_since(config.project_id, config.last_start, n) < n:
            continue
        if config.current_version_id is None and not selectors.enough_labels(
            project_id=config.project_id, min_labels=config.min_labels
        ):
            continue
        with transaction.atomic():
            run, _, ring = runs.run_queue(
                project_id=config.project_id, loop=Loop.FAST, trigger=TrainingRun.Trigger.LABELS
            )
            if ring:
                transaction.on_commit(lambda run_id=run.pk: enqueue_run(run_id))
        queued.append(run.pk)
    if queued:
        logger.warning("Queued %d training run(s) that labels owed (the debounce's catch-up): %s", len(queued), queued)
    return queued


def embeddings_schedule(*, project: Project, encoder_key: str | None = None) -> int:
    """Embed, in the background, every example of the project not cached yet for the encoder,
    in chunks of TALLY_EMBED_CHUNK_SIZE (one Celery task each, so several workers share them).
    Returns the number of chunks sent; 0 if all are cached or a dispatch is under way."""
    config = runs.config_get(project_id=project.pk)
    if config.model_kind != ModelKind.MINILM:
        return 0
    key = encoder_key or config.encoder_key or ENCODER_KEY
    # Labeled texts first (the next runs train on them), then in the queue's own order: the
    # texts about to be handed out are embedded, and so scored, before the tail of the pool.
    missing = list(
        Example.objects.filter(project=project)
        .exclude(Exists(ExampleEmbedding.objects.filter(example=OuterRef("pk"), encoder_key=key)))
        .order_by("-submitted_count", "-priority", "id")
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


def enqueue_cold_start(project_id: int) -> None:
    """Ring the doorbell (after commit) for the cold start's order of a project's pool. A lost
    message costs only the order: the next import or finished embedding sends another."""
    try:
        cold_start.delay(project_id)
    except Exception:
        logger.exception("Could not enqueue the cold start of project %s", project_id)


def _embed_rest_of_pool(version_id: int) -> None:
    """A MiniLM run scores the examples already embedded; the rest are embedded in the
    background, and the last chunk queues a run that scores them."""
    version = ModelVersion.objects.filter(pk=version_id).select_related("project").first()
    if version is not None and version.metrics.get("pool_scored", 0) < version.metrics.get("pool_size", 0):
        embeddings_schedule(project=version.project, encoder_key=version.encoder_key)


def _queue_run_to_score(project_id: int, encoder_key: str) -> None:
    """The pool is scored as far as it is embedded: queue a run when the pool's last missing
    embeddings arrived, or when the embedded part has doubled since the current version scored
    (about log2(pool / first scored) runs in all, each a few hundred ms of head training), once
    the project has a model or the labels for a first one."""
    config = runs.config_get(project_id=project_id)
    progress = selectors.embedding_progress(project=Project(pk=project_id), encoder_key=encoder_key)
    if not config.enabled:
        return
    if progress["done"] and config.current_version_id is None:  # order the cold start on the embeddings now
        transaction.on_commit(lambda: enqueue_cold_start(project_id))
    if not progress["done"]:
        current = config.current_version
        scored = current.metrics.get("pool_scored", 0) if current and current.encoder_key == encoder_key else 0
        if not (scored and progress["embedded"] >= 2 * scored):
            return
    if config.current_version_id is None and not selectors.enough_labels(
        project_id=project_id, min_labels=config.min_labels
    ):
        return
    with transaction.atomic():
        run, _, ring = runs.run_queue(project_id=project_id, loop=Loop.FAST, trigger=TrainingRun.Trigger.EMBEDDINGS)
        if ring:
            transaction.on_commit(lambda: enqueue_run(run.pk))


# --- tasks ------------------------------------------------------------------------------


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="training.tasks.run_training")
def run_training(self, run_id: int) -> int | None:
    """Execute one TrainingRun. Returns at once if the run is finished or held by another worker."""
    delivery = self.request.delivery_info or {}
    version_id = pipeline.execute_run(
        run_id=run_id,
        task_id=self.request.id or "",
        worker=self.request.hostname or "",
        redelivered=bool(delivery.get("redelivered")),
    )
    if version_id is not None:
        _embed_rest_of_pool(version_id)
    return version_id


@shared_task(name="training.tasks.sweep_lost_runs", ignore_result=True)
def sweep_lost_runs() -> int:
    """Periodic (CELERY_BEAT_SCHEDULE): re-send the runs whose message the broker lost, and
    queue the runs that labels owed when the debounce's Redis lost count (runs_catch_up)."""
    return len(runs_resend_lost()) + len(runs_catch_up())


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="training.tasks.embed_chunk")
def embed_chunk(self, project_id: int, encoder_key: str, example_ids: list[int]) -> int:
    """Embed one chunk of a project's examples (idempotent: cached ones are skipped). On the
    `embedding` queue, apart from the runs."""
    embedded = pipeline.embed_examples(project_id=project_id, encoder_key=encoder_key, example_ids=example_ids)
    if embedded:
        _queue_run_to_score(project_id, encoder_key)
    return embedded


@shared_task(name="training.tasks.cold_start", ignore_result=True)
def cold_start(project_id: int) -> dict | None:
    """After an import (the one message its hook sends) or once the pool's embeddings are all
    there: dispatch the embedding of examples not embedded yet (MiniLM projects; nothing when
    all are), then order the pool for its cold start (a diverse sample first) if there is no
    model yet."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    embeddings_schedule(project=project)
    return coldstart.cold_start(project_id=project_id)


@shared_task(bind=True, acks_late=True, name="training.tasks.explain_prediction")
def explain_prediction(self, version_id: int, example_id: int) -> None:
    """Token attributions for one example under one version, left in the cache for the API."""
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        return
    key = explain_cache_key(version, example_id)
    try:
        result = pipeline.explain_example(version_id=version_id, example_id=example_id)
    except Exception as exc:
        logger.exception("Explaining example %s under version %s failed", example_id, version_id)
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        cache.set(key, result, timeout=300)
        return
    cache.set(key, {"status": "ready", **result}, timeout=EXPLAIN_TTL)
