"""Least privilege in the database (issue 15, item 8): the application's role may only SELECT
and INSERT on the ledger's append-only tables and cannot disable their triggers."""

import uuid

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from labor_ledger import settlement
from labor_ledger.management.commands.db_app_role import append_only_tables
from tests.support.annotators import work

from .util import at

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="roles exist on PostgreSQL only")


@pytest.fixture
def ledger(project, examples, annotator, policy):
    work(project, annotator, start=at(0), active_seconds=30)
    settlement.settle_due(project=project, now=at(days=1))
    return project


@pytest.fixture
def app_role(db):
    """The role, created by the command in the test's transaction (rolled back with it)."""
    role = f"tally_app_{uuid.uuid4().hex[:8]}"
    call_command("db_app_role", role)
    return role


def as_role(role: str, statement: str, params=None):
    """Run one statement as `role` (SET LOCAL ROLE in a savepoint); returns the error or None."""
    try:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(f'SET LOCAL ROLE "{role}"')
            cur.execute(statement, params)
            raise _Done
    except _Done:
        return None
    except DatabaseError as exc:
        return exc


class _Done(Exception):
    pass


@pytest.mark.parametrize("table", ["labor_ledger_ledgerentry", "labor_ledger_settlement", "labor_ledger_paypolicy"])
def test_the_app_role_cannot_change_or_remove_ledger_rows(ledger, app_role, table):
    assert table in append_only_tables()
    assert as_role(app_role, f"SELECT count(*) FROM {table}") is None
    for statement in (
        f"UPDATE {table} SET id = id",
        f"DELETE FROM {table}",
        f"TRUNCATE {table}",
        f"ALTER TABLE {table} DISABLE TRIGGER USER",
        f"ALTER TABLE {table} DISABLE TRIGGER ALL",
        f"DROP TABLE {table}",
    ):
        error = as_role(app_role, statement)
        assert error is not None, statement
        assert "permission denied" in str(error) or "must be owner" in str(error), (statement, error)


def test_the_app_role_cannot_escape_its_privileges(ledger, app_role):
    for statement in (
        "SET session_replication_role = replica",  # would skip the triggers
        f'ALTER ROLE "{app_role}" SUPERUSER',
        "CREATE TABLE evil (id int)",
    ):
        assert as_role(app_role, statement) is not None, statement
    with connection.cursor() as cur:
        cur.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s", [app_role])
        assert cur.fetchone() == (False, False, False)


def test_the_app_role_can_do_the_applications_work(ledger, app_role, annotator):
    """Appends move the chain head and balances (UPDATE), and insert entries."""
    assert as_role(app_role, "UPDATE labor_ledger_chainhead SET updated_at = now()") is None
    assert as_role(app_role, "UPDATE labor_ledger_balance SET last_task_end = last_task_end") is None
    assert as_role(app_role, "SELECT 1 FROM labor_ledger_chainhead FOR UPDATE") is None
    assert as_role(app_role, "UPDATE annotation_example SET meta = meta") is None
    assert as_role(app_role, "DELETE FROM django_session") is None
    error = as_role(
        app_role,
        "INSERT INTO labor_ledger_ledgerentry SELECT * FROM labor_ledger_ledgerentry WHERE false",
    )
    assert error is None
