"""Celery tasks of the annotation app: imports (the ImportBatch row is the job's truth; the
message only carries its id, and running a finished batch again is a no-op) and the beat task
that closes claims and readings left open."""

from celery import shared_task

from . import review, services
from .imports import runs


@shared_task(
    name="annotation.import_batch",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def import_batch_task(batch_id: int) -> str | None:
    """Import an uploaded file. Redelivered after a worker died mid-import (its transaction
    rolled back, nothing written), it runs the batch again from the start."""
    batch = runs.import_batch_run(batch_id=batch_id)
    return batch.status if batch is not None else None


@shared_task(name="annotation.expire_claims", ignore_result=True)
def expire_claims() -> int:
    """Close claims whose lease ran out and readings gone quiet, so their time reaches the
    ledger without waiting for the next hand-out or settlement (CELERY_BEAT_SCHEDULE)."""
    return (
        services.attempts_expire() + services.instruction_readings_close_stale() + review.review_sessions_close_stale()
    )
