"""The per-version report read from labor summaries (labor_ledger/labor_summary.py: rows stamped
with the ledger position they were computed at, plus the entries appended after it) equals the
full statement (reports/sql.version_sql, kept as the reference) exactly: every (version,
annotator) row, every column, to the last decimal place the database returns.

Ledgers: a hand-built one (versions with ancestry and a branch, a version that drops labels and
one that drops them all, rejections and undos of labels already in a summarized version,
bonuses and adjustments after a stamp, settled and open periods, four annotators, entries after
the last summary), and the property test's random ones (Hypothesis)."""

import threading
from decimal import Decimal

import pandas as pd
import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotation import services as annotation_services
from annotation.models import Annotation, Membership
from labor_ledger import labor_index, labor_summary, settlement
from labor_ledger import services as ledger_services
from labor_ledger.models import (
    LaborSummary,
    LedgerPeriodSum,
    VersionDeltaSum,
    VersionEmbodiedSum,
    VersionLaborStamp,
    VersionRecordedSum,
)
from labor_ledger.reports import build
from labor_ledger.reports.frames import EVERY_ENTRY
from labor_ledger.reports.sql import consistent_read, version_sql, version_summary_sql
from tests.factories import UserFactory, add_examples, add_member, make_project
from training import services as training_services
from training.hooks import VersionRegistered, version_registered

from .report_helpers import at, label_text, make_version
from .test_reports_properties import EXAMPLES, Project, policies, step

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="summaries are written on PostgreSQL only")

D = Decimal
SUMMARY_MODELS = (LaborSummary, VersionLaborStamp, VersionDeltaSum, VersionEmbodiedSum, VersionRecordedSum,
                  LedgerPeriodSum)  # fmt: skip


def register(version):
    """As the worker does after training commits a version: index it, then summarize."""
    version_registered.send(VersionRegistered(version_id=version.pk, project_id=version.project_id))
    return version


def _rows(sql: str, params: dict) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [c[0] for c in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    keyed = {(r["version_id"], r["annotator_id"]): r for r in rows}
    assert len(keyed) == len(rows)
    return keyed


def assert_summary_equals_reference(project, *, upto: int | None = None) -> int:
    """Both statements in one snapshot; every row and column equal. Returns the rows compared."""
    params = {"project": project.pk, "upto": upto if upto is not None else 2**31 - 1}
    with consistent_read():
        summary = labor_summary.latest(project_id=project.pk, upto=upto)
        assert summary is not None, "every version should be summarized"
        ours = _rows(version_summary_sql(), {**params, "base": summary.pk, "after": summary.seq,
                                             "through": EVERY_ENTRY})  # fmt: skip
        reference = _rows(version_sql(), params)
    assert set(ours) == set(reference)
    for key, row in reference.items():
        assert set(ours[key]) == set(row)
        for column, value in row.items():
            assert ours[key][column] == value, (key, column, ours[key][column], value)
    return len(reference)


def assert_reports_equal(project, monkeypatch) -> None:
    """The whole per-version report (frames, derived columns) through both paths."""
    ours = build.labor_report(project=project, by="version").frame
    with monkeypatch.context() as m:
        m.setattr(labor_summary, "latest", lambda **kw: None)
        reference = build.labor_report(project=project, by="version").frame
    pd.testing.assert_frame_equal(ours, reference, check_exact=True)


def _counts() -> dict:
    return {m.__name__: m.objects.count() for m in SUMMARY_MODELS}


@pytest.fixture
def ledger():
    """Four annotators; versions registered as the worker would, with work before and after."""
    admin = UserFactory(username="summary-admin")
    project = make_project(admin=admin, name="Summary", labels=("positive", "negative"), annotations_per_example=3)
    training_services.config_update(project=project, enabled=False)
    pos, neg = project.labels.order_by("order", "id")
    e = add_examples(project, [f"summary text {i}" for i in range(1, 9)])
    people = [add_member(project, Membership.Role.ANNOTATOR, UserFactory(username=f"s{i}")) for i in range(4)]
    A, B, C, E = people  # noqa: N806 - the people of the scenario
    ledger_services.pay_policy_create(
        project=project,
        created_by=admin,
        effective_from=at(-3600),
        now=at(-3600),
        piece_rate=D("0.013"),
        hourly_rate=D("1.70"),
        floor_hourly_rate=D("41.33"),
        client_price_per_example=D("1.10"),
        pay_rejected_work=False,
    )
    a1 = label_text(project, A, e[0], start=at(0), seconds=11, label=pos)
    a2 = label_text(project, A, e[1], start=at(600), seconds=23, label=pos)
    a3 = label_text(project, B, e[2], start=at(1200), seconds=37, label=neg)
    label_text(project, A, e[3], start=at(1800), seconds=29, skip=True)
    v1 = register(make_version(project, sequence=1, annotations=[a1, a2, a3], snapshot_at=at(2400), accuracy=0.6))
    # after v1's stamp: new labels, a rejection of a label v1 holds, a bonus and an adjustment
    a4 = label_text(project, B, e[0], start=at(3000), seconds=13, label=neg)
    a5 = label_text(project, C, e[0], start=at(3300), seconds=17, label=pos)
    annotation_services.annotation_review(annotation=a3, status=Annotation.Status.REJECTED, actor=admin, now=at(3600))
    ledger_services.manual_entry_create(project=project, annotator=A, kind="bonus", amount=D("0.70"), reason="r",
                                        actor=admin, idempotency_key="sb1", now=at(3700))  # fmt: skip
    ledger_services.manual_entry_create(project=project, annotator=B, kind="adjustment", amount=D("-0.31"),
                                        reason="r", actor=admin, idempotency_key="sa1", now=at(3750))  # fmt: skip
    # v2 drops a3 (rejected), adds a4 and a5; v3 branches from v1
    v2 = register(make_version(project, sequence=2, parent=v1, annotations=[a1, a2, a4, a5], snapshot_at=at(4200)))
    v3 = register(make_version(project, sequence=3, parent=v1, annotations=[a1, a4], snapshot_at=at(4800)))
    # the first day settles (top-ups); the second stays open
    settlement.settle_due(project=project, now=at(days=1))
    a6 = label_text(project, C, e[4], start=at(120, days=1), seconds=19, label=neg)
    a7 = label_text(project, E, e[5], start=at(900, days=1), seconds=41, label=pos)
    annotation_services.annotation_undo_last(project=project, annotator=E, now=at(960, days=1))  # a7 undone
    a8 = label_text(project, E, e[6], start=at(1500, days=1), seconds=7, label=neg)
    v4 = register(
        make_version(project, sequence=4, parent=v2, annotations=[a1, a4, a6, a8], snapshot_at=at(2000, days=1))
    )
    v5 = register(
        make_version(project, sequence=5, parent=v3, annotations=[], snapshot_at=at(2100, days=1))
    )  # drops all
    # after the last summary: a rejection of a label in v1, v2, v3 and v4, money, more labels
    annotation_services.annotation_review(annotation=a1, status=Annotation.Status.REJECTED, actor=admin,
                                          now=at(2500, days=1))  # fmt: skip
    ledger_services.manual_entry_create(project=project, annotator=C, kind="adjustment", amount=D("0.27"), reason="r",
                                        actor=admin, idempotency_key="sa2", now=at(2600, days=1))  # fmt: skip
    label_text(project, B, e[7], start=at(3000, days=1), seconds=31, label=pos)
    return {"project": project, "admin": admin, "people": people, "versions": [v1, v2, v3, v4, v5],
            "annotations": [a1, a2, a3, a4, a5, a6, a7, a8]}  # fmt: skip


@pytest.mark.django_db
def test_summary_path_equals_the_full_statement(ledger, monkeypatch):
    project = ledger["project"]
    summaries = list(LaborSummary.objects.filter(project=project).order_by("seq"))
    # One summary per registration that found new entries (rolled forward); v3 joined v2's
    # summary and v5 joined v4's (nothing appended between them).
    assert len(summaries) == 3
    assert VersionLaborStamp.objects.filter(summary=summaries[-1]).count() == 5
    assert [(s.from_seq) for s in summaries[1:]] == [s.seq for s in summaries[:-1]]  # the chunks tile the ledger
    latest = summaries[-1]
    head = labor_summary.ChainHead.objects.get(project=project).seq
    assert latest.seq < head  # entries after the last summary: the report adds them
    compared = 0
    for upto in (None, 1, 2, 3, 4, 5):
        compared += assert_summary_equals_reference(project, upto=upto)
    assert compared > 40
    assert_reports_equal(project, monkeypatch)
    # And once the tail is summarized too (the next registration rolls every version forward).
    labor_summary.summarize(project_id=project.pk)
    assert LaborSummary.objects.filter(project=project).order_by("-seq").first().seq == head
    for upto in (None, 2, 5):
        assert_summary_equals_reference(project, upto=upto)
    assert_reports_equal(project, monkeypatch)


@pytest.mark.django_db
def test_a_version_not_summarized_reads_the_full_statement_until_backfilled(ledger, monkeypatch):
    project = ledger["project"]
    a = ledger["annotations"]
    v6 = make_version(project, sequence=6, parent=ledger["versions"][3], annotations=[a[1], a[3]],
                      snapshot_at=at(4000, days=1))  # fmt: skip
    labor_index.versions_index(project_id=project.pk)  # indexed, as before summaries existed; not summarized
    assert labor_summary.latest(project_id=project.pk) is None
    assert labor_summary.latest(project_id=project.pk, upto=5) is not None
    before = _counts()
    report = build.labor_report(project=project, by="version")  # the reference statement; reads only
    assert _counts() == before
    assert list(report.frame["version"]) == [1, 2, 3, 4, 5, 6]
    assert project.pk in set(labor_summary.projects_unsummarized().values_list("project_id", flat=True))
    labor_summary.summarize(project_id=project.pk)  # what labor_index_backfill does
    assert VersionLaborStamp.objects.filter(version=v6).exists()
    assert not labor_summary.projects_unsummarized().exists()
    assert_summary_equals_reference(project)
    assert_reports_equal(project, monkeypatch)


@pytest.mark.django_db
def test_summarizing_is_idempotent_and_rows_are_never_changed(ledger):
    project = ledger["project"]
    labor_summary.summarize(project_id=project.pk)
    counts = _counts()
    labor_summary.summarize(project_id=project.pk)  # nothing appended, nothing registered
    assert _counts() == counts
    row = VersionEmbodiedSum.objects.first()
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        VersionEmbodiedSum.objects.filter(pk=row.pk).update(pay=D(0))
    with pytest.raises(Exception, match="append-only"), transaction.atomic():  # the database refuses too
        with connection.cursor() as cursor:
            cursor.execute("UPDATE labor_ledger_versionembodiedsum SET pay = 0 WHERE id = %s", [row.pk])


@pytest.mark.django_db(transaction=True)
def test_two_workers_summarizing_at_once_write_one_summary(ledger):
    project = ledger["project"]
    label_text(project, ledger["people"][3], project.examples.order_by("id").last(), start=at(5000, days=1),
               seconds=9, label=project.labels.first())  # fmt: skip
    before = LaborSummary.objects.filter(project=project).count()
    barrier = threading.Barrier(2)
    errors = []

    def worker():
        try:
            barrier.wait(timeout=30)
            labor_summary.summarize(project_id=project.pk)
        except Exception as exc:  # noqa: BLE001 - asserted on below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert LaborSummary.objects.filter(project=project).count() == before + 1
    assert_summary_equals_reference(project)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policy=policies, plan=st.lists(step, min_size=1, max_size=14))
@pytest.mark.django_db
def test_summary_path_equals_the_full_statement_on_random_ledgers(policy, plan):
    with transaction.atomic():
        run = Project(policy)
        for action in plan:
            run.apply(action)
        if run.versions:
            for upto in {None, 1, len(run.versions)}:
                assert_summary_equals_reference(run.project, upto=upto)
        transaction.set_rollback(True)
