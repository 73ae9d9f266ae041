"""Nobody edits an entry: the database refuses it, the models refuse it, and verify_ledger
notices when someone got around both."""

import importlib
from decimal import Decimal
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from labor_ledger import selectors, settlement
from labor_ledger.models import Balance, LedgerEntry, LedgerIsAppendOnly, PayPolicy, Settlement
from tests.support.annotators import work

from .util import at

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL only")


@pytest.fixture
def ledger(project, examples, annotator, policy):
    work(project, annotator, start=at(0), active_seconds=30)
    work(project, annotator, start=at(40), active_seconds=10, skip=True)
    settlement.settle_due(project=project, now=at(days=1))
    return project


@postgres_only
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE labor_ledger_ledgerentry SET amount = amount * 100",
        "UPDATE labor_ledger_ledgerentry SET reason = 'edited' WHERE seq = 1",
        "DELETE FROM labor_ledger_ledgerentry WHERE seq = 1",
        "DELETE FROM labor_ledger_ledgerentry",
        "UPDATE labor_ledger_settlement SET payable = 0",
        "DELETE FROM labor_ledger_settlement",
        "UPDATE labor_ledger_paypolicy SET piece_rate = 0",
        "DELETE FROM labor_ledger_paypolicy",
    ],
)
def test_the_database_refuses_raw_updates_and_deletes(ledger, sql):
    before = list(LedgerEntry.objects.order_by("seq").values_list("entry_hash", "amount", "reason"))
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert list(LedgerEntry.objects.order_by("seq").values_list("entry_hash", "amount", "reason")) == before
    assert Settlement.objects.count() == 1 and PayPolicy.objects.count() == 1


def test_the_models_refuse_changes_before_the_database_sees_them(ledger):
    entry = LedgerEntry.objects.first()
    entry.amount = Decimal("1000")
    with pytest.raises(LedgerIsAppendOnly):
        entry.save()
    with pytest.raises(LedgerIsAppendOnly):
        entry.delete()
    with pytest.raises(LedgerIsAppendOnly):
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=0)
    with pytest.raises(LedgerIsAppendOnly):
        LedgerEntry.objects.all().delete()
    with pytest.raises(LedgerIsAppendOnly):
        LedgerEntry.objects.bulk_update([entry], ["amount"])
    with pytest.raises(LedgerIsAppendOnly):
        Settlement.objects.first().save()
    with pytest.raises(LedgerIsAppendOnly):
        PayPolicy.objects.first().delete()


def test_the_trigger_migration_is_skipped_on_other_databases():
    module = importlib.import_module("labor_ledger.migrations.0002_append_only_triggers")
    operation = module.Migration.operations[0]
    editor = mock.Mock()
    editor.connection.vendor = "sqlite"
    operation.database_forwards("labor_ledger", editor, None, None)
    operation.database_backwards("labor_ledger", editor, None, None)
    editor.execute.assert_not_called()


def _tamper(sql: str) -> None:
    """What a superuser could do: switch triggers off for the transaction, then edit rows
    (SQLite has no trigger to switch off)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql)
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = DEFAULT")


def test_a_verified_ledger_reports_no_problem(ledger):
    result = selectors.ledger_verify(project=ledger)
    assert result.ok, result.problems
    assert result.entries == LedgerEntry.objects.count() >= 5


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("UPDATE labor_ledger_ledgerentry SET amount = 5 WHERE kind = 'piece_pay'", "do not match its hash"),
        ("DELETE FROM labor_ledger_ledgerentry WHERE seq = 2", "expected #2"),
        ("UPDATE labor_ledger_ledgerentry SET prev_hash = repeat('1', 64) WHERE seq = 3", "prev_hash does not match"),
    ],
)
def test_verify_ledger_finds_a_tampered_entry_and_exits_non_zero(ledger, sql, expected):
    _tamper(sql)
    result = selectors.ledger_verify(project=ledger)
    assert not result.ok
    assert any(expected in p for p in result.problems), result.problems
    out = StringIO()
    with pytest.raises(CommandError, match="does not verify"):
        call_command("verify_ledger", "--project", ledger.slug, stdout=out)
    assert expected in out.getvalue()


def test_verify_ledger_finds_a_balance_that_disagrees_with_the_entries(ledger, annotator):
    Balance.objects.filter(annotator=annotator).update(amount=Decimal("99"))
    result = selectors.ledger_verify(project=ledger)
    assert any("balance 99" in p for p in result.problems), result.problems


def test_verify_ledger_exits_zero_on_a_sound_ledger(ledger):
    out = StringIO()
    call_command("verify_ledger", stdout=out)
    assert f"{ledger.slug}: ok" in out.getvalue() and "1 project ledger(s) verified" in out.getvalue()


def test_the_hash_reads_only_the_attributes_verification_fetches(ledger):
    """ledger_verify re-hashes rows fetched as chain.HASHED_ATTRIBUTES: canonical() needs no other."""
    from types import SimpleNamespace

    from labor_ledger import chain

    entries = list(LedgerEntry.objects.filter(project=ledger).order_by("seq"))
    assert len(entries) >= 3
    for entry in entries:
        values = SimpleNamespace(**{name: getattr(entry, name) for name in chain.HASHED_ATTRIBUTES})
        assert chain.entry_hash(values) == entry.entry_hash
