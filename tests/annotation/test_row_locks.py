"""Services lock only the rows they change: locking a joined project row serialises every
submit of a project and deadlocks concurrent submits against claims (PostgreSQL)."""

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation import services


def _locking_queries(queries):
    """Locking reads of the annotation tables (the ledger locks its own chain head; fine)."""
    return [q["sql"] for q in queries if "FOR UPDATE" in q["sql"] and 'FROM "annotation_' in q["sql"]]


def test_submit_locks_the_attempt_row_only(project, examples, annotator):
    attempt = services.claim_next(project=project, annotator=annotator)
    with CaptureQueriesContext(connection) as ctx:
        services.annotation_submit(attempt_id=attempt.pk, annotator=annotator, label_ids=[project.labels.first().pk])
    locks = _locking_queries(ctx.captured_queries)
    assert locks, "the submit must lock its attempt"
    for sql in locks:
        assert 'FOR UPDATE OF "annotation_attempt"' in sql, sql


def test_expiring_claims_locks_attempt_rows_only(project, examples, annotator):
    now = timezone.now()
    services.claim_next(project=project, annotator=annotator, now=now)
    later = now + timedelta(seconds=10**6)
    with CaptureQueriesContext(connection) as ctx:
        assert services.attempts_expire(project=project, now=later) == 1
    locks = _locking_queries(ctx.captured_queries)
    assert locks
    for sql in locks:
        assert 'FOR UPDATE OF "annotation_attempt"' in sql, sql
