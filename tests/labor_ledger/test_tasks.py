"""The periodic settlement task on the real stack: Redis broker, a Celery worker process,
the test PostgreSQL database."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from config.celery_app import app
from labor_ledger import services, tasks
from labor_ledger.models import LedgerEntry, Settlement
from tests.support.annotators import work
from tests.support.waiting import wait_for


def test_the_beat_schedule_names_a_registered_task():
    entry = settings.CELERY_BEAT_SCHEDULE["labor-ledger-settle-due"]
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks
    assert entry["task"] == tasks.settle_due.name


def test_no_beat_entry_polls_for_model_versions_to_index():
    """The labor index is written when a version is registered (labor_ledger/labor_index.py)."""
    assert "labor-ledger-index-model-versions" not in settings.CELERY_BEAT_SCHEDULE
    assert not hasattr(tasks, "index_model_versions")


def test_the_task_settles_what_is_due(project, examples, annotator, admin_user):
    two_days_ago = timezone.now() - timedelta(days=2)
    services.pay_policy_create(
        project=project,
        created_by=admin_user,
        effective_from=two_days_ago,
        now=two_days_ago,
        floor_hourly_rate=Decimal("36"),
    )
    work(project, annotator, start=two_days_ago, active_seconds=100)
    assert tasks.settle_due() == 1
    assert tasks.settle_due() == 0
    assert Settlement.objects.get().payable == Decimal("1.00")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_settles_yesterday(celery_worker, project, examples, annotator, admin_user):
    # given: work yesterday, paid 0.10 a text under a 36.00/h floor: 100 s worked = 1.00 floor
    yesterday = timezone.now() - timedelta(days=1, hours=1)
    services.pay_policy_create(
        project=project,
        created_by=admin_user,
        effective_from=yesterday,
        now=yesterday,
        piece_rate=Decimal("0.10"),
        floor_hourly_rate=Decimal("36"),
    )
    work(project, annotator, start=yesterday, active_seconds=100)
    # when: the periodic task runs in the worker, then runs again
    tasks.settle_due.delay()
    wait_for(Settlement.objects.exists, what="a settlement")
    tasks.settle_due.delay()
    celery_worker.wait_idle()
    # then: one settlement, topped up to the floor, once
    settlement = Settlement.objects.get()
    assert (settlement.gross, settlement.top_up, settlement.payable) == (
        Decimal("0.1"),
        Decimal("0.9"),
        Decimal("1.00"),
    )
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.FLOOR_TOP_UP).count() == 1
