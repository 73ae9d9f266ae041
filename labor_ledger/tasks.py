"""Periodic ledger work. The rows are the truth: settling is idempotent, so a task that runs
twice, or overlaps the settle_ledger command, writes each settlement once."""

import logging

from celery import shared_task

from . import services, settlement

logger = logging.getLogger(__name__)


@shared_task(name="labor_ledger.settle_due")
def settle_due() -> int:
    """Close every complete, unsettled period of every project (CELERY_BEAT_SCHEDULE, hourly)."""
    settlements = settlement.settle_due()
    if settlements:
        logger.info("labor ledger: settled %d annotator-periods", len(settlements))
    return len(settlements)


@shared_task(name="labor_ledger.index_model_versions")
def index_model_versions() -> int:
    """Compute the label deltas of model versions that have none yet (CELERY_BEAT_SCHEDULE), so
    the first Labor Card or report after a new version does not wait for them."""
    from annotation.models import Project
    from training.models import ModelVersion

    from .models import VersionLaborIndex

    waiting = ModelVersion.objects.exclude(pk__in=VersionLaborIndex.objects.values("version_id"))
    done = 0
    for project in Project.objects.filter(pk__in=waiting.values("project_id")).order_by("pk"):
        done += services.version_labor_index_ensure(project=project)
    if done:
        logger.info("labor ledger: indexed the labels of %d model versions", done)
    return done
