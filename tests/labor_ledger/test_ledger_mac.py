"""A ledger the database owner cannot forge unseen (issue 15, item 7): each entry carries a
keyed MAC that the database never holds, so the product's own (unkeyed) chain code is not
enough to rewrite or extend the chain."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from labor_ledger import chain, selectors, settlement
from labor_ledger.models import ChainHead, LedgerEntry
from tests.support.annotators import work

from .util import at

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="triggers exist on PostgreSQL only")


@pytest.fixture
def ledger(project, examples, annotator, policy):
    work(project, annotator, start=at(0), active_seconds=30)
    work(project, annotator, start=at(40), active_seconds=10)
    work(project, annotator, start=at(80), active_seconds=10, skip=True)
    settlement.settle_due(project=project, now=at(days=1))
    return project


def problems_of(project) -> list[str]:
    result = selectors.ledger_verify(project=project)
    assert not result.ok, "the forgery verified"
    out = StringIO()
    with pytest.raises(CommandError, match="does not verify"):
        call_command("verify_ledger", "--project", project.slug, stdout=out)
    return result.problems


def rehash_from(project, seq: int) -> None:
    """What the database owner can do with the product's own chain code: re-hash every entry
    from `seq` on after an edit, and move the chain head to match."""
    prev = LedgerEntry.objects.get(project=project, seq=seq - 1).entry_hash if seq > 1 else chain.GENESIS
    with connection.cursor() as cur:
        for entry in LedgerEntry.objects.filter(project=project, seq__gte=seq).order_by("seq"):
            entry.prev_hash = prev
            entry.entry_hash = prev = chain.entry_hash(entry)
            cur.execute(
                "UPDATE labor_ledger_ledgerentry SET prev_hash = %s, entry_hash = %s WHERE id = %s",
                [entry.prev_hash, entry.entry_hash, entry.pk],
            )
        cur.execute("UPDATE labor_ledger_chainhead SET last_hash = %s WHERE project_id = %s", [prev, project.pk])


@postgres_only
def test_an_edited_and_rehashed_entry_is_caught(ledger):
    """(a) As the owner: disable the trigger, edit an amount, re-hash with chain.entry_hash."""
    assert selectors.ledger_verify(project=ledger).ok
    target = LedgerEntry.objects.filter(project=ledger, kind="piece_pay").order_by("seq").first()
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("ALTER TABLE labor_ledger_ledgerentry DISABLE TRIGGER USER")
        cur.execute("UPDATE labor_ledger_ledgerentry SET amount = amount + 100 WHERE id = %s", [target.pk])
        rehash_from(ledger, target.seq)
        cur.execute("ALTER TABLE labor_ledger_ledgerentry ENABLE TRIGGER USER")
        # the balance follows, as a careful forger would make it
        cur.execute(
            "UPDATE labor_ledger_balance SET amount = amount + 100 WHERE project_id = %s AND annotator_id = %s",
            [ledger.pk, target.annotator_id],
        )
    problems = problems_of(ledger)
    assert problems[0].startswith(f"entry #{target.seq}:"), problems  # names the first bad entry
    assert "MAC" in problems[0]


def forged_bonus(project, annotator, *, keyed_as: str | None = None) -> LedgerEntry:
    """(b) With only INSERT on the ledger and UPDATE on the chain head and balance: append a
    bonus hashed correctly with the product's own chain code."""
    head = ChainHead.objects.get(project=project)
    now = timezone.now()
    entry = LedgerEntry(
        project_id=project.pk,
        seq=head.seq + 1,
        annotator_id=annotator.pk,
        kind=LedgerEntry.Kind.BONUS,
        amount=Decimal("500.000000"),
        currency=project.currency,
        occurred_at=now,
        period_start=(now + timedelta(days=3)).date(),
        reason="forged",
        idempotency_key="forged-bonus",
        prev_hash=head.last_hash,
        created_at=now,
    )
    entry.entry_hash = chain.entry_hash(entry)
    if keyed_as:  # a MAC made up by someone without the key
        entry.hash_version, entry.mac_key_id, entry.mac = chain.HASH_V2, keyed_as, "f" * 64
    LedgerEntry.objects.bulk_create([entry])  # an INSERT
    ChainHead.objects.filter(pk=head.pk).update(seq=entry.seq, last_hash=entry.entry_hash)
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE labor_ledger_balance SET amount = amount + 500, entry_count = entry_count + 1 "
            "WHERE project_id = %s AND annotator_id = %s",
            [project.pk, annotator.pk],
        )
    return entry


@pytest.mark.parametrize("keyed", [False, True])
def test_an_appended_correctly_hashed_bonus_is_caught(ledger, annotator, keyed):
    assert selectors.ledger_verify(project=ledger).ok
    entry = forged_bonus(ledger, annotator, keyed_as=chain.key_id("a guess") if keyed else None)
    problems = problems_of(ledger)
    assert problems[0].startswith(f"entry #{entry.seq}:"), problems


def test_a_genuine_chain_verifies_and_every_entry_is_keyed(ledger):
    assert selectors.ledger_verify(project=ledger).ok
    rows = LedgerEntry.objects.filter(project=ledger).values_list("hash_version", "mac", "mac_key_id")
    assert {(v, len(m), k) for v, m, k in rows} == {
        (chain.HASH_V3, 64, chain.key_id(chain.settings.TALLY_LEDGER_MAC_KEY))
    }


def test_keys_rotate_old_entries_verify_under_their_key(ledger, annotator, settings):
    old = settings.TALLY_LEDGER_MAC_KEY
    settings.TALLY_LEDGER_MAC_KEY, settings.TALLY_LEDGER_MAC_OLD_KEYS = "a-new-key-" + "x" * 40, [old]
    work(ledger, annotator, start=at(200), active_seconds=10)
    assert selectors.ledger_verify(project=ledger).ok
    kids = set(LedgerEntry.objects.filter(project=ledger).values_list("mac_key_id", flat=True))
    assert kids == {chain.key_id(old), chain.key_id(settings.TALLY_LEDGER_MAC_KEY)}
    settings.TALLY_LEDGER_MAC_OLD_KEYS = []  # the old key forgotten: its entries no longer verify
    assert any("not configured" in p for p in selectors.ledger_verify(project=ledger).problems)


@postgres_only
def test_legacy_unkeyed_entries_verify_up_to_the_heads_seal_and_not_after(ledger, annotator):
    """Entries written before the key existed (hash_version 1) verify by their hash alone, up to
    the seal the migration put on the chain head; a v1 entry after the seal is a forgery."""
    # rewrite this chain as it would have been before the change: unkeyed (v1 hashes), sealed,
    # and without checkpoints (they came later too)
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("ALTER TABLE labor_ledger_ledgerentry DISABLE TRIGGER USER")
        cur.execute(
            "UPDATE labor_ledger_ledgerentry SET hash_version = 1, mac = '', mac_key_id = '' WHERE project_id = %s",
            [ledger.pk],
        )
        rehash_from(ledger, 1)
        cur.execute("ALTER TABLE labor_ledger_ledgerentry ENABLE TRIGGER USER")
        cur.execute("ALTER TABLE labor_ledger_ledgercheckpoint DISABLE TRIGGER USER")
        cur.execute("DELETE FROM labor_ledger_ledgercheckpoint WHERE project_id = %s", [ledger.pk])
        cur.execute("ALTER TABLE labor_ledger_ledgercheckpoint ENABLE TRIGGER USER")
    head = ChainHead.objects.get(project=ledger)
    ChainHead.objects.filter(pk=head.pk).update(
        last_mac="", legacy_seq=head.seq, legacy_seal=chain.legacy_seal(ledger.pk, head.seq, head.last_hash)
    )
    assert selectors.ledger_verify(project=ledger).ok
    # the application carries on: keyed entries chain from the legacy tip
    work(ledger, annotator, start=at(200), active_seconds=10)
    assert selectors.ledger_verify(project=ledger).ok
    # a forged seal that covers more is caught
    ChainHead.objects.filter(pk=head.pk).update(legacy_seq=head.seq + 1)
    assert not selectors.ledger_verify(project=ledger).ok
