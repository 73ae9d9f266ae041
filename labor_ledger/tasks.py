"""Periodic ledger work. The rows are the truth: settling is idempotent, so a task that runs
twice, or overlaps the settle_ledger command, writes each settlement once.

(The per-version labor index is not polled for: the worker writes it when a version is
registered, labor_index.version_registered.)"""

import logging

from celery import shared_task

from . import settlement

logger = logging.getLogger(__name__)


@shared_task(name="labor_ledger.settle_due")
def settle_due() -> int:
    """Close every complete, unsettled period of every project (CELERY_BEAT_SCHEDULE, hourly)."""
    settlements = settlement.settle_due()
    if settlements:
        logger.info("labor ledger: settled %d annotator-periods", len(settlements))
    return len(settlements)
