"""Report files (CSV, Parquet, JSON), formula escaping, pseudonyms, and the labor_report command."""

import csv
import io
import json
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from labor_ledger import pseudonyms, selectors, services
from labor_ledger.models import ChainHead, LedgerEntry
from labor_ledger.reports import build, writers
from tests.factories import UserFactory, add_member
from training.hooks import VersionRegistered, version_registered

from .report_helpers import at, build_scenario, make_version

D = Decimal
KEY = "a-pseudonym-key-for-tests-only-0123"


@pytest.fixture
def scenario(db):
    scenario = build_scenario()
    announce(*scenario["versions"].values())
    return scenario


def announce(*versions):
    """Tell the apps above training that versions were registered, as the worker does on commit."""
    for v in versions:
        version_registered.send(VersionRegistered(version_id=v.pk, project_id=v.project_id))


def ledger_sums(project) -> dict:
    return LedgerEntry.objects.filter(project=project).aggregate(
        **{name: make() for name, make in selectors.TOTALS.items()}
    )


def read_csv(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


# --- CSV ---


def test_csv_totals_equal_the_ledger_and_name_its_head(scenario):
    project = scenario["project"]
    rows = read_csv(writers.to_csv(build.labor_report(project=project, by="annotator")))
    ledger = ledger_sums(project)
    head = ChainHead.objects.get(project=project)
    assert sum(D(r["pay"]) for r in rows) == ledger["pay"]
    assert sum(D(r["active_seconds"]) for r in rows) == ledger["active"]
    assert sum(D(r["client_amount"]) for r in rows) == ledger["client"]
    assert sum(int(r["examples"]) for r in rows) == ledger["examples"]
    assert {(r["ledger_head_seq"], r["ledger_head_hash"], r["currency"]) for r in rows} == {
        (str(head.seq), head.last_hash, "USD")
    }


@pytest.mark.parametrize("name", ["=HYPERLINK(1)", "+1bob", "-bob", "@bob", "\tbob", "\rbob"])
def test_csv_cells_a_spreadsheet_would_run_are_escaped(scenario, name):
    project = scenario["project"]
    sly = add_member(project, user=UserFactory(username=name))
    services.manual_entry_create(
        project=project,
        annotator=sly,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        amount=D("-0.05"),
        reason="clawback",
        actor=scenario["admin"],
        idempotency_key=f"adj-{name!r}",
        now=at(days=2),
    )
    rows = read_csv(writers.to_csv(build.labor_report(project=project, by="annotator")))
    row = next(r for r in rows if r["annotator"].endswith(name[1:]) and r["annotator"] != name[1:])
    assert row["annotator"] == "'" + name
    assert row["pay"] == "-0.050000"  # a number stays a number, sign and all
    assert all(not r["annotator"].startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows)


# --- Parquet ---


def test_parquet_keeps_exact_decimals_and_the_head_in_its_metadata(scenario):
    project = scenario["project"]
    report = build.labor_report(project=project, by="annotator")
    table = pq.read_table(io.BytesIO(writers.to_parquet(report)))
    assert table.schema.field("pay").type == pa.decimal128(24, 6)
    assert table.schema.field("active_seconds").type == pa.decimal128(20, 3)
    assert table.schema.field("examples").type == pa.int64()
    meta = json.loads(table.schema.metadata[b"tally.report"])
    head = ChainHead.objects.get(project=project)
    assert meta["ledger_head"] == {"seq": head.seq, "hash": head.last_hash}
    assert (meta["project"], meta["currency"], meta["report"]) == (project.slug, "USD", "labor by annotator")
    ledger = ledger_sums(project)
    assert sum(table.column("pay").to_pylist()) == ledger["pay"]
    assert sum(table.column("counted_seconds").to_pylist()) == ledger["counted"]


def test_parquet_of_the_version_report(scenario):
    report = build.labor_report(project=scenario["project"], by="version")
    table = pq.read_table(io.BytesIO(writers.to_parquet(report)))
    assert table.column("version").to_pylist() == [1, 2, 3]
    # v3 = {a1, a4}: piece 0.02 + A's 10 s x 0.58/60 (0.096667) + B's 10 s x 0.49/50 (0.098)
    assert table.column("pay").to_pylist() == [D("0.702"), D("0.518"), D("0.214667")]
    assert table.schema.field("snapshot_at").type == pa.timestamp("us", tz="UTC")


def test_parquet_of_the_period_report_has_dates(scenario):
    table = pq.read_table(io.BytesIO(writers.to_parquet(build.labor_report(project=scenario["project"], by="period"))))
    assert table.schema.field("period").type == pa.date32()
    assert [str(d) for d in table.column("period").to_pylist()] == ["2030-01-07"]


# --- JSON ---


def test_json_has_rows_totals_and_the_head(scenario):
    project = scenario["project"]
    data = json.loads(writers.to_json(build.labor_report(project=project, by="period")))
    head = ChainHead.objects.get(project=project)
    assert data["ledger_head"] == {"seq": head.seq, "hash": head.last_hash}
    assert data["rows"][0]["period"] == "2030-01-07"
    assert D(data["totals"]["pay"]) == ledger_sums(project)["pay"] == D(data["rows"][0]["pay"])
    version = json.loads(writers.to_json(build.labor_report(project=project, by="version")))
    assert version["totals"] is None  # versions share labels: their rows do not add up
    assert [r["version"] for r in version["rows"]] == [1, 2, 3]
    assert version["rows"][0]["accuracy_change"] is None


# --- pseudonyms ---


def test_pseudonyms_are_stable_under_one_key_and_change_with_it(settings):
    settings.TALLY_PSEUDONYM_KEY = KEY
    first = pseudonyms.pseudonym(42)
    assert first == pseudonyms.pseudonym(42) and first.startswith("anon-") and len(first) == 21
    assert pseudonyms.pseudonym(43) != first
    settings.TALLY_PSEUDONYM_KEY = KEY + "-rotated"
    assert pseudonyms.pseudonym(42) != first


@pytest.mark.parametrize(
    ("key", "message"),
    [("", "TALLY_PSEUDONYM_KEY"), ("short", "too short"), ("same-as-the-secret-key", "differ from SECRET_KEY")],
)
def test_pseudonymized_output_needs_a_proper_key(settings, key, message):
    settings.SECRET_KEY = "same-as-the-secret-key"
    settings.TALLY_PSEUDONYM_KEY = key
    with pytest.raises(pseudonyms.PseudonymKeyMissing, match=message):
        pseudonyms.pseudonym(1)
    assert not pseudonyms.pseudonyms_available()


def test_a_pseudonymized_report_names_no_one(scenario, settings):
    settings.TALLY_PSEUDONYM_KEY = KEY
    project = scenario["project"]
    report = build.labor_report(project=project, by="annotator", pseudonymize=True)
    again = build.labor_report(project=project, by="annotator", pseudonymize=True)
    assert sorted(report.frame["annotator"]) == sorted(again.frame["annotator"])
    assert "annotator_id" not in report.frame.columns
    expected = {pseudonyms.pseudonym(u.pk) for u in (scenario["A"], scenario["B"], scenario["C"])}
    assert set(report.frame["annotator"]) == expected
    for data in (writers.to_csv(report), writers.to_json(report), writers.to_parquet(report)):
        for user in (scenario["A"], scenario["B"], scenario["C"]):
            assert user.email.encode() not in data
            assert f'"{user.username}"'.encode() not in data and f"\n{user.username},".encode() not in data
    rows = read_csv(writers.to_csv(report))
    assert sum(D(r["pay"]) for r in rows) == ledger_sums(project)["pay"]


def test_pseudonymizing_without_a_key_fails_before_any_work(scenario, settings):
    settings.TALLY_PSEUDONYM_KEY = ""
    with pytest.raises(pseudonyms.PseudonymKeyMissing, match="TALLY_PSEUDONYM_KEY"):
        build.labor_report(project=scenario["project"], by="annotator", pseudonymize=True)


# --- the command ---


@pytest.mark.parametrize("file_format", ["csv", "parquet", "json"])
def test_labor_report_command_writes_each_format(scenario, tmp_path, file_format):
    out = tmp_path / f"report.{file_format}"
    err = io.StringIO()
    call_command(
        "labor_report",
        "--project",
        scenario["project"].slug,
        "--by",
        "annotator",
        "--format",
        file_format,
        "--out",
        str(out),
        stderr=err,
    )
    head = ChainHead.objects.get(project=scenario["project"])
    assert f"ledger head #{head.seq} {head.last_hash}" in err.getvalue()
    data = out.read_bytes()
    if file_format == "csv":
        total = sum(D(r["pay"]) for r in read_csv(data))
    elif file_format == "json":
        total = D(json.loads(data)["totals"]["pay"])
    else:
        total = sum(pq.read_table(io.BytesIO(data)).column("pay").to_pylist())
    assert total == ledger_sums(scenario["project"])["pay"]


def test_labor_report_command_scoped_to_a_version_and_pseudonymized(scenario, tmp_path, settings):
    settings.TALLY_PSEUDONYM_KEY = KEY
    out = tmp_path / "v1.csv"
    call_command(
        "labor_report",
        "--project",
        scenario["project"].slug,
        "--model-version",
        "1",
        "--by",
        "annotator",
        "--format",
        "csv",
        "--out",
        str(out),
        "--pseudonymize",
        stderr=io.StringIO(),
    )
    rows = read_csv(out.read_bytes())
    assert {r["annotator"] for r in rows} == {
        pseudonyms.pseudonym(scenario["A"].pk),
        pseudonyms.pseudonym(scenario["B"].pk),
    }
    assert sum(D(r["pay"]) for r in rows) == D("0.702")


def test_labor_report_command_defaults_to_per_version_and_writes_to_stdout(scenario, capsysbinary):
    call_command("labor_report", "--project", scenario["project"].slug, "--format", "json", "--out", "-")
    data = json.loads(capsysbinary.readouterr().out)
    assert data["report"] == "labor by version" and len(data["rows"]) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--project", "nope", "--format", "csv", "--out", "x.csv"], "No project"),
        (["--format", "parquet", "--out", "-"], "Parquet is binary"),
        (["--model-version", "9", "--format", "csv", "--out", "x.csv"], "no model version 9"),
        (["--by", "annotator", "--pseudonymize", "--format", "csv", "--out", "x.csv"], "TALLY_PSEUDONYM_KEY"),
    ],
)
def test_labor_report_command_explains_what_is_wrong(scenario, settings, tmp_path, args, message):
    settings.TALLY_PSEUDONYM_KEY = ""
    if "--project" not in args:
        args = ["--project", scenario["project"].slug, *args]
    args = [str(tmp_path / a) if a.endswith(".csv") else a for a in args]
    with pytest.raises(CommandError, match=message):
        call_command("labor_report", *args)


def test_labor_report_command_reads_and_says_when_a_version_is_not_indexed(scenario, tmp_path):
    args = ["labor_report", "--project", scenario["project"].slug, "--format", "csv", "--out", str(tmp_path / "v.csv")]
    said = io.StringIO()
    call_command(*args, stderr=said)
    assert "indexing" not in said.getvalue()  # the worker indexed the versions when they were registered
    ann = scenario["annotations"]
    make_version(
        scenario["project"],
        sequence=4,
        parent=scenario["versions"][3],
        annotations=[ann["a1"]],
        snapshot_at=at(days=3),
    )
    with pytest.raises(CommandError, match="Model version 4 of project card is not indexed yet"):
        call_command(*args)
    call_command("labor_index_backfill", stdout=io.StringIO())
    call_command(*args, stderr=io.StringIO())
