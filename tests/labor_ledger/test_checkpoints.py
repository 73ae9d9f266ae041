"""Signed checkpoints of the chain heads (issue 15, item 7) and the fast, versioned verification
(issue 18, item 2). The MAC chain catches entries written without the key; a checkpoint catches
a chain cut short (truncation) or put back to an older head (rollback), even when the database
owner also deletes the checkpoint rows: the witness file outside the database still has them."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from labor_ledger import chain, checkpoints, selectors, settlement, tasks, verification
from labor_ledger.models import ChainHead, LedgerCheckpoint, LedgerEntry
from tests.support.annotators import work

from .util import at

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="triggers exist on PostgreSQL only")


@pytest.fixture
def witness(settings, tmp_path):
    settings.TALLY_CHECKPOINT_DIR = str(tmp_path / "witness")
    return tmp_path / "witness" / checkpoints.WITNESS_FILE


@pytest.fixture
def ledger(project, examples, annotator, policy, witness):
    work(project, annotator, start=at(0), active_seconds=30)
    work(project, annotator, start=at(40), active_seconds=10)
    settlement.settle_due(project=project, now=at(days=1))  # signs the settled head
    return project


def more_work(project, annotator, n: int, start: float = 200) -> None:
    for i in range(n):
        work(project, annotator, start=at(start + 40 * i), active_seconds=10)


def problems_of(project) -> list[str]:
    result = selectors.ledger_verify(project=project)
    assert not result.ok, "the forgery verified"
    with pytest.raises(CommandError, match="does not verify"):
        call_command("verify_ledger", "--project", project.slug, "--full", stdout=StringIO())
    return result.problems


def as_owner_cut_back_to(project, seq: int, *, drop_checkpoints: bool) -> None:
    """What the database owner can do: delete the newest entries, put the chain head back on
    the (genuine) entry `seq`, make the balances match, and delete the checkpoint rows too."""
    last = LedgerEntry.objects.get(project=project, seq=seq)
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("ALTER TABLE labor_ledger_ledgerentry DISABLE TRIGGER USER")
        cur.execute("DELETE FROM labor_ledger_ledgerentry WHERE project_id = %s AND seq > %s", [project.pk, seq])
        cur.execute("ALTER TABLE labor_ledger_ledgerentry ENABLE TRIGGER USER")
        if drop_checkpoints:
            cur.execute("ALTER TABLE labor_ledger_ledgercheckpoint DISABLE TRIGGER USER")
            cur.execute("DELETE FROM labor_ledger_ledgercheckpoint WHERE project_id = %s", [project.pk])
            cur.execute("ALTER TABLE labor_ledger_ledgercheckpoint ENABLE TRIGGER USER")
        cur.execute(
            "UPDATE labor_ledger_chainhead SET seq = %s, last_hash = %s, last_mac = %s WHERE project_id = %s",
            [seq, last.entry_hash, last.mac, project.pk],
        )
        cur.execute(
            """UPDATE labor_ledger_balance b SET
                 amount = (SELECT coalesce(sum(amount), 0) FROM labor_ledger_ledgerentry e
                           WHERE e.project_id = b.project_id AND e.annotator_id = b.annotator_id),
                 entry_count = (SELECT count(*) FROM labor_ledger_ledgerentry e
                                WHERE e.project_id = b.project_id AND e.annotator_id = b.annotator_id)
               WHERE b.project_id = %s""",
            [project.pk],
        )


def test_settlement_and_the_schedule_sign_the_head_in_the_database_and_the_witness_file(
    ledger, annotator, witness, settings
):
    head = ChainHead.objects.get(project=ledger)
    cp = LedgerCheckpoint.objects.get(project=ledger)
    assert (cp.seq, cp.reason, cp.entry_hash, cp.mac) == (head.seq, "settlement", head.last_hash, head.last_mac)
    assert checkpoints.signature_ok(checkpoints.from_row(cp)) is True
    assert checkpoints.checkpoint_heads() == 0  # the head has not moved
    more_work(ledger, annotator, 1)
    assert tasks.checkpoint_heads() == 1  # the beat task
    assert settings.CELERY_BEAT_SCHEDULE["labor-ledger-checkpoint-heads"]["task"] == "labor_ledger.checkpoint_heads"
    on_file = checkpoints.witness_checkpoints(ledger.pk)
    assert [c.seq for c in on_file] == list(LedgerCheckpoint.objects.order_by("id").values_list("seq", flat=True))
    assert all(checkpoints.signature_ok(c) for c in on_file)
    assert witness.read_text().count("\n") == 2


@postgres_only
@pytest.mark.parametrize("drop_checkpoints", [False, True])
def test_a_truncation_is_caught(ledger, annotator, drop_checkpoints):
    more_work(ledger, annotator, 3)
    checkpoints.checkpoint_heads()
    cut = LedgerCheckpoint.objects.filter(reason="settlement").get().seq + 1
    assert selectors.ledger_verify(project=ledger).ok
    as_owner_cut_back_to(ledger, cut, drop_checkpoints=drop_checkpoints)
    problems = problems_of(ledger)
    assert problems[0].startswith(f"entry #{cut + 1}: missing"), problems
    assert "truncated or rolled back" in problems[0]


@postgres_only
@pytest.mark.parametrize("drop_checkpoints", [False, True])
def test_a_rollback_to_an_older_head_is_caught(ledger, annotator, drop_checkpoints):
    """Back to an older head, then the application carries on: every entry is genuine and
    chained, only the checkpoint knows the entry at its seq was different."""
    more_work(ledger, annotator, 3)
    signed = checkpoints.checkpoint(project=ledger, reason=checkpoints.Reason.MANUAL)
    cut = LedgerCheckpoint.objects.filter(reason="settlement").get().seq
    as_owner_cut_back_to(ledger, cut, drop_checkpoints=drop_checkpoints)
    more_work(ledger, annotator, 4, start=2000)
    assert ChainHead.objects.get(project=ledger).seq > signed.seq
    problems = problems_of(ledger)
    assert problems[0].startswith(f"entry #{signed.seq}: differs from the checkpoint"), problems


def test_a_checkpoint_with_a_forged_signature_is_caught(ledger):
    cp = LedgerCheckpoint.objects.get(project=ledger)
    LedgerCheckpoint.objects.create(
        project=ledger,
        seq=cp.seq + 5,
        entry_hash=cp.entry_hash,
        mac=cp.mac,
        reason="schedule",
        created_at=timezone.now(),
        key_id=cp.key_id,
        signature=cp.signature,
    )
    problems = problems_of(ledger)
    assert "signature does not verify" in problems[0]


def test_a_correctly_hashed_v3_bonus_appended_without_the_key_is_caught(ledger, annotator):
    """The forger uses the product's own v3 encoding (chain.compact) and guesses a MAC."""
    head = ChainHead.objects.get(project=ledger)
    now = timezone.now()
    entry = LedgerEntry(
        project_id=ledger.pk,
        seq=head.seq + 1,
        annotator_id=annotator.pk,
        kind=LedgerEntry.Kind.BONUS,
        amount=Decimal("500.000000"),
        currency=ledger.currency,
        occurred_at=now,
        period_start=(now + timedelta(days=3)).date(),
        reason="forged",
        idempotency_key="forged-v3-bonus",
        prev_hash=head.last_hash,
        created_at=now,
        hash_version=chain.HASH_V3,
        mac_key_id=chain.key_id(chain.settings.TALLY_LEDGER_MAC_KEY),
        mac="e" * 64,
    )
    entry.entry_hash = chain.entry_hash(entry)
    LedgerEntry.objects.bulk_create([entry])
    ChainHead.objects.filter(pk=head.pk).update(seq=entry.seq, last_hash=entry.entry_hash, last_mac=entry.mac)
    problems = problems_of(ledger)
    assert (
        problems[0]
        == f"entry #{entry.seq}: its MAC does not verify (written or changed by someone without the ledger key)"
    )


def test_without_a_signing_key_nothing_is_signed_and_verify_says_so(project, examples, annotator, policy, settings):
    settings.TALLY_CHECKPOINT_SIGNING_KEY = ""
    work(project, annotator, start=at(0), active_seconds=30)
    settlement.settle_due(project=project, now=at(days=1))
    assert not LedgerCheckpoint.objects.exists()
    result = selectors.ledger_verify(project=project)
    assert result.ok and checkpoints.NOT_SIGNED in result.notes
    out = StringIO()
    call_command("verify_ledger", "--project", project.slug, stdout=out)
    assert "checkpoints are not signed" in out.getvalue()


def test_the_compact_encoding_postgresql_computes_is_the_one_python_writes(ledger, annotator, admin_user):
    """chain.COMPACT_SQL and chain.compact() must agree byte for byte (nulls, negative amounts,
    non-ASCII text, reversals), or verification would call genuine entries forged."""
    from labor_ledger import services

    services.manual_entry_create(
        project=ledger,
        idempotency_key="adj-1",
        actor=admin_user,
        annotator=annotator,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        amount=Decimal("-12.345678"),
        reason='Korrektur für Ü — ✓ "quoted" \\ back',
    )
    entries = list(LedgerEntry.objects.filter(project=ledger).order_by("seq"))
    assert {e.hash_version for e in entries} == {chain.HASH_V3}
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT seq, {chain.COMPACT_SQL} FROM labor_ledger_ledgerentry WHERE project_id = %s ORDER BY seq",  # noqa: S608
            [ledger.pk],
        )
        from_sql = {seq: bytes(enc) for seq, enc in cur.fetchall()}
    for e in entries:
        assert from_sql[e.seq] == chain.compact(e), e.seq
        assert chain.entry_hash(e) == e.entry_hash


def test_verification_resumes_after_the_last_verified_checkpoint(ledger, annotator):
    out = StringIO()
    call_command("verify_ledger", "--project", ledger.slug, stdout=out)
    verified = LedgerCheckpoint.objects.get(project=ledger, reason="verified")
    assert "re-hashed after" not in out.getvalue()
    more_work(ledger, annotator, 2)
    out = StringIO()
    call_command("verify_ledger", "--project", ledger.slug, stdout=out)
    assert f"re-hashed after #{verified.seq}" in out.getvalue()
    resumed = verification.verify_project(project=ledger, since=verification.resume_point(ledger))
    assert resumed.ok and resumed.resumed_after > verified.seq
    assert resumed.entries == LedgerEntry.objects.filter(project=ledger).count()


def test_reports_and_exports_name_the_latest_checkpoint_and_the_public_key_is_published(ledger, admin_user, client):
    from labor_ledger.reports import build, writers

    cp = LedgerCheckpoint.objects.get(project=ledger)
    key = checkpoints.published_key()
    report = build.labor_report(project=ledger, by="annotator")
    assert report.metadata()["ledger_checkpoint"] == {
        "seq": cp.seq,
        "at": cp.created_at.isoformat(),
        "key_id": cp.key_id,
        "entry_hash": cp.entry_hash,
        "reason": "settlement",
        "public_key": key["public_key"],
    }
    assert f",{cp.seq},{cp.created_at.isoformat()},{cp.key_id}" in writers.to_csv(report).decode()
    client.force_login(admin_user)
    answer = client.get(f"/api/projects/{ledger.slug}/labor-reports/?by=annotator")
    assert answer.status_code == 200 and answer["X-Tally-Ledger-Checkpoint"].startswith(f"seq={cp.seq};")
    published = client.get(f"/api/projects/{ledger.slug}/ledger/checkpoints/").json()
    assert published["public_key"]["key_id"] == cp.key_id == key["key_id"]
    assert [c["seq"] for c in published["checkpoints"]] == [cp.seq]


def test_the_console_ledger_page_names_the_checkpoint_and_the_public_key(ledger, admin_user, client, settings):
    from django.urls import reverse

    cp = LedgerCheckpoint.objects.get(project=ledger)
    client.force_login(admin_user)
    html = client.get(reverse("console:ledger", args=[ledger.slug])).content.decode()
    assert f"entry <strong>#{cp.seq}</strong>" in html and cp.key_id in html
    assert checkpoints.published_key()["public_key"] in html
    settings.TALLY_CHECKPOINT_SIGNING_KEY = ""
    html = client.get(reverse("console:ledger", args=[ledger.slug])).content.decode()
    assert "Checkpoints are not signed on this server" in html


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_parallel_ranges_verify_a_genuine_chain_and_name_a_forgery_in_a_later_range(
    project, examples, annotator, policy, monkeypatch
):
    """verify_ledger --jobs: seq ranges in worker processes, each entry checked against the
    stored hash and MAC of the one before it."""
    more_work(project, annotator, 4, start=0)
    monkeypatch.setattr(verification, "MIN_SPLIT", 2)
    top = ChainHead.objects.get(project=project).seq
    assert len(verification.plan(project, parts=3)) == 3
    out = StringIO()
    call_command("verify_ledger", "--project", project.slug, "--full", "--jobs", "3", stdout=out)
    assert f"ok, {top} entries" in out.getvalue()
    target = LedgerEntry.objects.get(project=project, seq=top - 1)
    with connection.cursor() as cur:
        cur.execute("ALTER TABLE labor_ledger_ledgerentry DISABLE TRIGGER USER")
        cur.execute("UPDATE labor_ledger_ledgerentry SET reason = 'edited' WHERE id = %s", [target.pk])
        cur.execute("ALTER TABLE labor_ledger_ledgerentry ENABLE TRIGGER USER")
    out = StringIO()
    with pytest.raises(CommandError, match="does not verify"):
        call_command("verify_ledger", "--project", project.slug, "--full", "--jobs", "3", stdout=out)
    assert f"entry #{top - 1}: its contents do not match its hash" in out.getvalue()
