"""Periodic ledger work. The rows are the truth: settling is idempotent, so a task that runs
twice, or overlaps the settle_ledger command, writes each settlement once.

(The per-version labor index is not polled for: the worker writes it when a version is
registered, labor_index.version_registered.)"""

import logging

from celery import shared_task

from . import checkpoints, settlement

logger = logging.getLogger(__name__)


@shared_task(name="labor_ledger.settle_due")
def settle_due() -> int:
    """Close every complete, unsettled period of every project (CELERY_BEAT_SCHEDULE, hourly)."""
    settlements = settlement.settle_due()
    if settlements:
        logger.info("labor ledger: settled %d annotator-periods", len(settlements))
    return len(settlements)


@shared_task(name="labor_ledger.checkpoint_heads")
def checkpoint_heads() -> int:
    """Sign every project's chain head that moved since its last checkpoint (CELERY_BEAT_SCHEDULE,
    TALLY_CHECKPOINT_SECONDS; checkpoints.py)."""
    written = checkpoints.checkpoint_heads()
    if written:
        logger.info("labor ledger: signed %d chain head checkpoint(s)", written)
    return written
