"""The annotation hot path's SQL statement budget (issue 18 item 1): one claim, the first
heartbeat (which marks the text shown), a second (which credits active time) and a submit,
ledger and retraining debounce included, counted statement by statement. A count, never a
time: the time is bench/hot_path_bench.py's (`make bench-hot-path`).

Transactional (no test transaction around it), so each service's own transaction is the
outermost one, as in production: no savepoints a request would not send."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation import services
from labor_ledger import services as ledger_services
from labor_ledger.models import LedgerEntry
from tests.factories import UserFactory, add_examples, add_member, make_project

# Issue 18's target is 10 statements for claim + first heartbeat + submit on PostgreSQL; this is
# what the hot path takes today (BENCHMARKS.md, "The annotation hot path"), so that it can only
# go down. 31 before issue 18.
HOT_PATH_BUDGET = 10
CREDITING_HEARTBEAT_BUDGET = 3


def _statements(ctx) -> list[str]:
    """The statements sent, less transaction control (BEGIN, COMMIT: Django records those too)."""
    return [q["sql"] for q in ctx.captured_queries if q["sql"] not in ("BEGIN", "COMMIT", "ROLLBACK")]


@pytest.mark.django_db(transaction=True)
def test_claim_heartbeat_submit_stay_within_the_statement_budget():
    if connection.vendor != "postgresql":
        pytest.skip("the budget is PostgreSQL's")
    admin = UserFactory(username="budget-admin")
    project = make_project(admin=admin, name="Budget")
    add_examples(project, [f"budget text {i}" for i in range(5)])
    start = timezone.now() - timedelta(hours=1)
    ledger_services.pay_policy_create(
        project=project, created_by=admin, effective_from=start, now=start, piece_rate=Decimal("0.10")
    )
    annotator = add_member(project, user=UserFactory(username="budget-annotator"))
    label = project.labels.first().pk
    # a first label, so the annotator's clock, balance and the project's chain head exist
    first = services.claim_next(project=project, annotator=annotator)
    services.attempt_heartbeat(attempt_id=first.pk, annotator=annotator)
    services.annotation_submit(attempt_id=first.pk, annotator=annotator, label_ids=[label])

    now = timezone.now()
    with CaptureQueriesContext(connection) as claim:
        attempt = services.claim_next(project=project, annotator=annotator, now=now)
    with CaptureQueriesContext(connection) as shown:
        services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=now + timedelta(seconds=1))
    with CaptureQueriesContext(connection) as beat:
        services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=now + timedelta(seconds=6))
    with CaptureQueriesContext(connection) as submit:
        services.annotation_submit(
            attempt_id=attempt.pk, annotator=annotator, label_ids=[label], now=now + timedelta(seconds=9)
        )
    # the ledger got its entries: time and piece pay
    assert set(LedgerEntry.objects.filter(attempt=attempt).values_list("kind", flat=True)) >= {
        LedgerEntry.Kind.PIECE_PAY
    }
    loop = _statements(claim) + _statements(shown) + _statements(submit)
    assert len(loop) <= HOT_PATH_BUDGET, "\n".join(loop)
    assert len(_statements(beat)) <= CREDITING_HEARTBEAT_BUDGET, "\n".join(_statements(beat))
