"""Celery tasks of the training app: thin doorbells that call training.pipeline.

Routed to the `training` queue (config/settings: CELERY_TASK_ROUTES), except the on-demand
explanation, which goes to `default` so that it never waits behind a long run. Imported by the
web process when it enqueues: nothing heavy is imported at module level.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache

logger = logging.getLogger(__name__)

EXPLAIN_TTL = 24 * 3600


def explain_cache_key(version, example_id: int) -> str:
    """Keyed by the weights' hash too: a recreated database never meets a stale explanation."""
    return f"training:explain:{version.pk}:{version.weights_sha256[:16]}:{example_id}"


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="training.tasks.run_training")
def run_training(self, run_id: int) -> int | None:
    """Execute one TrainingRun. Returns at once if the run is finished or held by another worker."""
    from .pipeline import execute_run

    delivery = self.request.delivery_info or {}
    return execute_run(
        run_id=run_id,
        task_id=self.request.id or "",
        worker=self.request.hostname or "",
        redelivered=bool(delivery.get("redelivered")),
    )


@shared_task(name="training.tasks.sweep_lost_runs", ignore_result=True)
def sweep_lost_runs() -> int:
    """Periodic (CELERY_BEAT_SCHEDULE): re-send the runs whose message the broker lost."""
    from .services import runs_resend_lost

    return len(runs_resend_lost())


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="training.tasks.embed_chunk")
def embed_chunk(self, project_id: int, encoder_key: str, example_ids: list[int]) -> int:
    """Embed one chunk of a project's examples (idempotent: cached ones are skipped)."""
    from .pipeline import embed_examples

    return embed_examples(project_id=project_id, encoder_key=encoder_key, example_ids=example_ids)


@shared_task(bind=True, acks_late=True, name="training.tasks.explain_prediction")
def explain_prediction(self, version_id: int, example_id: int) -> None:
    """Token attributions for one example under one version, left in the cache for the API."""
    from .models import ModelVersion
    from .pipeline import explain_example

    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        return
    key = explain_cache_key(version, example_id)
    try:
        result = explain_example(version_id=version_id, example_id=example_id)
    except Exception as exc:
        logger.exception("Explaining example %s under version %s failed", example_id, version_id)
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        cache.set(key, result, timeout=300)
        return
    cache.set(key, {"status": "ready", **result}, timeout=EXPLAIN_TTL)
