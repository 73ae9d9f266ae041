"""Labor reports on a small project worked out by hand (tests/labor_ledger/report_helpers.py):
per model version, per annotator, per period, per project; allocation of top-ups; wages;
increments; what the books held at each training snapshot; totals equal the ledger's sums."""

from datetime import date
from decimal import Decimal

import pytest
from django.db.models import Sum

from annotation.models import Annotation
from labor_ledger import selectors
from labor_ledger.models import Balance, ChainHead, LedgerEntry, VersionLabelDelta, VersionLaborIndex
from labor_ledger.reports import build
from training.hooks import VersionRegistered, version_registered

from .report_helpers import build_scenario, make_version

D = Decimal
DAY = date(2030, 1, 7)


@pytest.fixture
def scenario(db):
    scenario = build_scenario()
    announce(*scenario["versions"].values())
    return scenario


def announce(*versions):
    """Tell the apps above training that versions were registered, as the worker does on commit."""
    for v in versions:
        version_registered.send(VersionRegistered(version_id=v.pk, project_id=v.project_id))


def ledger_sums(entries) -> dict:
    """The ledger's own sums (labor_ledger.selectors.TOTALS) over a set of entries."""
    return entries.aggregate(**{name: make() for name, make in selectors.TOTALS.items()})


def by_version(project):
    report = build.labor_report(project=project, by="version")
    return {int(row["version"]): row for row in report.frame.to_dict("records")}, report


def test_the_scenario_is_what_the_helper_says(scenario):
    # The hand computations below rest on these: each attempt took exactly its seconds.
    ann = scenario["annotations"]
    assert [ann[k].attempt.active_seconds for k in ("a1", "a2", "a3", "a4", "a5")] == [10, 20, 40, 10, 10]
    assert [ann[k].attempt.wall_seconds for k in ("a1", "a2", "a3", "a4", "a5")] == [10, 20, 40, 10, 10]
    ann["a3"].refresh_from_db()
    assert ann["a3"].status == Annotation.Status.REJECTED
    top_ups = dict(
        LedgerEntry.objects.filter(kind=LedgerEntry.Kind.FLOOR_TOP_UP).values_list("annotator__username", "amount")
    )
    assert top_ups == {"ann": D("0.58"), "bea": D("0.49"), "cy": D("0.09")}
    assert not LedgerEntry.objects.filter(time_category="between_tasks").exists()


def test_labor_embodied_in_each_version_counts_each_label_once(scenario):
    rows, _ = by_version(scenario["project"])
    # v1 = {a1 10 s, a2 20 s, a3 40 s}; v2 = {a1, a2, a4 10 s, a5 10 s}; v3 (branch of v1) = {a1, a4}
    assert [rows[v]["labels"] for v in (1, 2, 3)] == [3, 4, 2]
    assert [rows[v]["active_seconds"] for v in (1, 2, 3)] == [D("70"), D("50"), D("20")]
    assert [rows[v]["wall_seconds"] for v in (1, 2, 3)] == [D("70"), D("50"), D("20")]
    assert rows[1]["active_hours"] == D("0.019444")  # 70 / 3600
    # a3 was rejected after v1 was trained: its piece pay and client price were reversed
    assert [rows[v]["direct_pay"] for v in (1, 2, 3)] == [D("0.02"), D("0.04"), D("0.02")]
    assert [rows[v]["piece_pay"] for v in (1, 2, 3)] == [D("0.02"), D("0.04"), D("0.02")]
    assert [rows[v]["client_amount"] for v in (1, 2, 3)] == [D("2"), D("4"), D("2")]
    assert [rows[v]["floor_amount"] for v in (1, 2, 3)] == [D("0.70"), D("0.50"), D("0.20")]


def test_top_ups_are_allocated_at_each_annotators_rate_per_hour_worked(scenario):
    rows, _ = by_version(scenario["project"])
    # A: 0.58 over 60 s worked, 30 s in v1 -> 0.29; B: 0.49 over 50 s, 40 s in v1 -> 0.392
    assert rows[1]["floor_top_up"] == D("0.682")
    assert rows[1]["allocated_pay"] == D("0.682")
    assert rows[1]["pay"] == D("0.702")  # the wage bill: direct 0.02 + allocated 0.682
    assert rows[1]["pay_before_top_up"] == D("0.02")
    assert rows[1]["client_share"] == D("0.351")  # 0.702 / 2.00
    # v2: A 0.29, B 10 s x 0.49/50 = 0.098, C 10 s x 0.09/10 = 0.09
    assert rows[2]["floor_top_up"] == D("0.478")
    assert rows[2]["pay"] == D("0.518")
    assert rows[1]["bonus"] == rows[1]["adjustment"] == D("0")


def test_effective_hourly_wages_and_the_floor(scenario):
    rows, _ = by_version(scenario["project"])
    # v1: A (0.02 + 0.29) / 30 s = 37.20 per hour; B (0 + 0.392) / 40 s = 35.28 per hour
    assert rows[1]["annotators_worked"] == 2
    assert rows[1]["wage_median"] == D("36.24")
    assert rows[1]["wage_p10"] == D("35.472")
    assert rows[1]["wage_p90"] == D("37.008")
    assert rows[1]["floor_hourly_rate"] == D("36")
    assert rows[1]["below_floor_before_top_up"] == 2  # both earned less than 0.01/s before top-ups
    # v2: C 36.00, A 37.20, B (0.01 + 0.098) / 10 s = 38.88
    assert (rows[2]["wage_p10"], rows[2]["wage_median"], rows[2]["wage_p90"]) == (
        D("36.24"),
        D("37.2"),
        D("38.544"),
    )
    assert rows[2]["below_floor_before_top_up"] == 3


def test_increment_over_the_parent(scenario):
    rows, _ = by_version(scenario["project"])
    assert (rows[1]["new_labels"], rows[1]["dropped_labels"]) == (3, 0)  # no parent: everything is new
    assert rows[1]["accuracy_change"] != rows[1]["accuracy_change"]  # NaN: nothing to compare with
    # v2 over v1: a4, a5 added (10 s each), a3 dropped
    assert (rows[2]["new_labels"], rows[2]["dropped_labels"]) == (2, 1)
    assert rows[2]["new_active_seconds"] == D("20")
    # new wages: piece 0.02 + B's 0.098 + C's 0.09 allocated top-ups
    assert rows[2]["new_wage_bill"] == D("0.208")
    assert rows[2]["accuracy_change"] == pytest.approx(0.10)
    assert rows[2]["accuracy_change_per_labor_hour"] == pytest.approx(0.10 / (20 / 3600))  # 18.0
    assert rows[2]["accuracy_change_per_currency_unit"] == pytest.approx(0.10 / 0.208)
    # v3 is a branch of v1: a4 added, a2 and a3 dropped
    assert (rows[3]["parent_version"], rows[3]["new_labels"], rows[3]["dropped_labels"]) == (1, 1, 2)
    assert rows[3]["accuracy_change"] == pytest.approx(0.05)


def test_what_the_books_held_when_each_version_was_trained(scenario):
    rows, _ = by_version(scenario["project"])
    # before v1 (t=2400): a1 10, a2 20, a3 40 submitted; A's skip 30 s, unpaid
    assert rows[1]["recorded_active_seconds"] == D("100")
    assert rows[1]["submitted_active_seconds"] == D("70")
    assert rows[1]["skipped_active_seconds"] == D("30")
    assert rows[1]["unpaid_skipped_active_seconds"] == D("30")
    assert rows[1]["rejected_active_seconds"] == D("0")
    assert rows[1]["recorded_unpaid_active_seconds"] == D("30")
    # before v2 (t=4200): a4 and a5 labeled, a3 rejected (its 40 s moved to "rejected", unpaid)
    assert rows[2]["recorded_active_seconds"] == D("120")
    assert rows[2]["submitted_active_seconds"] == D("50")
    assert rows[2]["rejected_active_seconds"] == D("40")
    assert rows[2]["unpaid_rejected_active_seconds"] == D("40")
    assert rows[2]["recorded_unpaid_active_seconds"] == D("70")


def test_a_version_row_equals_the_ledgers_sums_over_its_labels(scenario):
    rows, _ = by_version(scenario["project"])
    for sequence, version in scenario["versions"].items():
        labels = version.manifest.values("annotation_id")
        ledger = ledger_sums(LedgerEntry.objects.filter(project=scenario["project"], annotation_id__in=labels))
        row = rows[sequence]
        assert row["active_seconds"] == ledger["active"]
        assert row["wall_seconds"] == ledger["wall"]
        assert row["counted_seconds"] == ledger["counted"]
        assert row["direct_pay"] == ledger["pay"]
        assert row["piece_pay"] == ledger["piece_pay"]
        assert row["client_amount"] == ledger["client"]
        assert row["floor_amount"] == ledger["floor"]
        assert row["examples"] == ledger["examples"]


def test_the_label_deltas_are_computed_once_and_rebuild_each_manifest(scenario):
    build.labor_report(project=scenario["project"], by="version")
    assert VersionLaborIndex.objects.count() == 3
    for version in scenario["versions"].values():
        ancestors, v = [], version
        while v is not None:
            ancestors.append(v.pk)
            v = v.parent
        net = {}
        for annotation_id, sign in VersionLabelDelta.objects.filter(version_id__in=ancestors).values_list(
            "annotation_id", "sign"
        ):
            net[annotation_id] = net.get(annotation_id, 0) + sign
        assert {a for a, n in net.items() if n} == set(version.manifest.values_list("annotation_id", flat=True))
        assert set(net.values()) <= {0, 1}
    before = VersionLabelDelta.objects.count()
    build.labor_report(project=scenario["project"], by="version")
    assert VersionLabelDelta.objects.count() == before


def test_a_new_version_is_in_the_report_once_registered(scenario):
    ann = scenario["annotations"]
    later = make_version(
        scenario["project"],
        sequence=4,
        parent=scenario["versions"][2],
        annotations=[ann["a1"], ann["a5"]],
        snapshot_at=scenario["versions"][3].snapshot_at,
        accuracy=0.71,
    )
    announce(later)
    rows, _ = by_version(scenario["project"])
    assert (rows[4]["labels"], rows[4]["new_labels"], rows[4]["dropped_labels"]) == (2, 0, 2)
    assert rows[4]["active_seconds"] == D("20")


def test_report_by_annotator(scenario):
    report = build.labor_report(project=scenario["project"], by="annotator")
    rows = {row["annotator"]: row for row in report.frame.to_dict("records")}
    assert set(rows) == {"ann", "bea", "cy"}
    a, b = rows["ann"], rows["bea"]
    assert (a["active_seconds"], a["counted_seconds"], a["examples"]) == (D("60"), D("60"), 2)
    assert (a["piece_pay"], a["floor_top_up"], a["pay"], a["floor_amount"]) == (
        D("0.02"),
        D("0.58"),
        D("0.6"),
        D("0.6"),
    )
    assert a["unpaid_active_seconds"] == D("30")  # the skip
    assert a["effective_hourly_wage"] == D("36")
    assert a["below_floor_before_top_up"] and a["periods_topped_up"] == 1
    assert a["allocated_pay"] == D("0")  # the whole ledger: nothing to allocate
    # B: 40 s on a3 (rejected, still hours worked), 10 s on a4
    assert (b["active_seconds"], b["unpaid_active_seconds"], b["examples"], b["pay"]) == (
        D("50"),
        D("40"),
        1,
        D("0.5"),
    )
    assert b["client_amount"] == D("1")


def test_report_by_annotator_scoped_to_a_version(scenario):
    report = build.labor_report(project=scenario["project"], by="annotator", version=1)
    rows = {row["annotator"]: row for row in report.frame.to_dict("records")}
    assert set(rows) == {"ann", "bea"}  # cy's label came after v1
    assert (rows["ann"]["labels"], rows["ann"]["active_seconds"]) == (2, D("30"))
    assert (rows["ann"]["direct_pay"], rows["ann"]["floor_top_up"], rows["ann"]["pay"]) == (
        D("0.02"),
        D("0.29"),
        D("0.31"),
    )
    assert (rows["bea"]["direct_pay"], rows["bea"]["floor_top_up"]) == (D("0"), D("0.392"))
    assert rows["ann"]["effective_hourly_wage"] == D("37.2")


def test_report_by_period_and_for_the_project(scenario):
    period = build.labor_report(project=scenario["project"], by="period").frame
    assert period["period"].tolist() == [DAY]
    row = period.iloc[0]
    assert (row["annotators"], row["active_seconds"], row["pay"], row["floor_top_up"]) == (
        3,
        D("120"),
        D("1.2"),
        D("1.16"),
    )
    # everyone was paid exactly the floor: 36.00 an hour each
    assert (row["wage_p10"], row["wage_median"], row["wage_p90"]) == (D("36"), D("36"), D("36"))
    assert row["below_floor_before_top_up"] == 3
    project = build.labor_report(project=scenario["project"], by="project").frame
    assert project["pay"].tolist() == [D("1.2")] and project["client_amount"].tolist() == [D("4")]
    assert project["client_share"].tolist() == [D("0.3")]


@pytest.mark.parametrize("by", ["annotator", "period", "project"])
def test_report_totals_equal_the_ledgers_sums_and_balances(scenario, by):
    project = scenario["project"]
    report = build.labor_report(project=project, by=by)
    ledger = ledger_sums(LedgerEntry.objects.filter(project=project))
    totals = report.totals
    assert totals["active_seconds"] == ledger["active"]
    assert totals["wall_seconds"] == ledger["wall"]
    assert totals["counted_seconds"] == ledger["counted"]
    assert totals["pay"] == ledger["pay"]
    assert totals["piece_pay"] == ledger["piece_pay"]
    assert totals["floor_top_up"] == ledger["floor_top_up"]
    assert totals["client_amount"] == ledger["client"]
    assert totals["examples"] == ledger["examples"]
    assert totals["entries"] == ledger["entries"]
    assert totals["pay"] == Balance.objects.filter(project=project).aggregate(s=Sum("amount"))["s"]
    assert sum(report.frame["pay"], D(0)) == totals["pay"]


def test_every_report_names_the_chain_head_it_was_computed_from(scenario):
    head = ChainHead.objects.get(project=scenario["project"])
    for by in build.BY_CHOICES:
        report = build.labor_report(project=scenario["project"], by=by)
        assert (report.head.seq, report.head.hash) == (head.seq, head.last_hash)
    assert head.seq == LedgerEntry.objects.filter(project=scenario["project"]).count()


def test_an_unknown_version_or_grouping_is_refused(scenario):
    with pytest.raises(build.ReportError, match="no model version 9"):
        build.labor_report(project=scenario["project"], by="annotator", version=9)
    with pytest.raises(build.ReportError, match="Group by"):
        build.labor_report(project=scenario["project"], by="month")


def test_a_project_without_versions_or_entries_reports_empty(db, admin_user):
    from tests.factories import make_project

    empty = make_project(admin=admin_user, name="Empty")
    assert len(build.labor_report(project=empty, by="version").frame) == 0
    assert len(build.labor_report(project=empty, by="annotator").frame) == 0
    report = build.labor_report(project=empty, by="project")
    assert report.head.seq == 0 and report.totals["pay"] == 0
