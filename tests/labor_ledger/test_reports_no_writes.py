"""Reads never write (../shared/STYLE.md): a Labor Card GET (page and API) and every labor report
(by version, annotator, project, period; scoped to a version or not; each file format; the API
and the command) issue no INSERT, UPDATE or DELETE, whether the versions they read are indexed
or not. Derived data (the per-version labor index) is written when a version is registered,
never on read: tests/labor_ledger/test_reports_labor_index.py."""

import re

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labor_ledger import labor_index
from labor_ledger.models import VersionLaborIndex
from labor_ledger.reports import build, writers
from training.hooks import VersionRegistered, version_registered

from .report_helpers import build_scenario, make_version

KEY = "a-pseudonym-key-for-tests-only-0123"
WRITE = re.compile(r"\b(INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|TRUNCATE|MERGE\s+INTO)\b", re.I)


@pytest.fixture
def scenario(db, settings):
    """The hand-worked project, v1..v3 registered (indexed); v4 registered in the database but
    not announced yet, as in the moment between its commit and the worker's index."""
    settings.TALLY_PSEUDONYM_KEY = KEY
    scenario = build_scenario()
    for v in scenario["versions"].values():
        version_registered.send(VersionRegistered(version_id=v.pk, project_id=v.project_id))
    ann = scenario["annotations"]
    scenario["versions"][4] = make_version(
        scenario["project"],
        sequence=4,
        parent=scenario["versions"][2],
        annotations=[ann["a1"], ann["a5"]],
        snapshot_at=scenario["versions"][3].snapshot_at,
    )
    assert VersionLaborIndex.objects.count() == 3
    return scenario


def writes(captured: CaptureQueriesContext) -> list[str]:
    assert len(captured.captured_queries) > 0, "nothing was captured: the test would prove nothing"
    return [q["sql"] for q in captured.captured_queries if WRITE.search(q["sql"])]


def auditor_client(scenario) -> Client:
    client = Client()
    client.force_login(scenario["auditor"])  # the session is written here, before the capture
    return client


@pytest.mark.parametrize(
    ("where", "sequence", "status"),
    [("page", 1, 200), ("page", 3, 200), ("api", 2, 200), ("page", 4, 409), ("api", 4, 409)],
)
def test_a_labor_card_get_writes_nothing(scenario, where, sequence, status):
    # given: an auditor, and no card cached (the GET builds it)
    client = auditor_client(scenario)
    cache.clear()
    slug = scenario["project"].slug
    name = "labor_card:version" if where == "page" else "labor_ledger:labor-card"
    # when
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse(name, args=[slug, sequence]))
    # then
    assert writes(captured) == []
    assert response.status_code == status, response.content[:500]
    assert VersionLaborIndex.objects.count() == 3  # v4 stays unindexed: nothing computed on read


REPORTS = [
    {"by": "version"},
    {"by": "version", "model_version": 2},
    {"by": "version", "model_version": 4},  # not indexed: refused, nothing computed
    {"by": "annotator"},
    {"by": "annotator", "model_version": 1},
    {"by": "annotator", "pseudonymize": "true"},
    {"by": "project"},
    {"by": "project", "model_version": 3},
    {"by": "period"},
    {"by": "period", "model_version": 4},
]


@pytest.mark.parametrize("file_format", writers.FORMATS)
@pytest.mark.parametrize("params", REPORTS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_every_report_api_answer_writes_nothing(scenario, params, file_format):
    client = auditor_client(scenario)
    query = "&".join(f"{k}={v}" for k, v in {**params, "file_format": file_format}.items())
    url = reverse("labor_ledger:labor-report", args=[scenario["project"].slug]) + f"?{query}"
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert writes(captured) == []
    unindexed = params["by"] == "version" and params.get("model_version", 4) == 4
    assert response.status_code == (409 if unindexed else 200), response.content[:500]
    assert VersionLaborIndex.objects.count() == 3


@pytest.mark.parametrize("by", build.BY_CHOICES)
def test_every_report_and_writer_called_directly_writes_nothing(scenario, by):
    for version in (None, 1, 3, 4):
        with CaptureQueriesContext(connection) as captured:
            if by == "version" and version in (None, 4):  # v4 is in scope and not indexed
                with pytest.raises(labor_index.VersionNotIndexed):
                    build.labor_report(project=scenario["project"], by=by, version=version)
            else:
                report = build.labor_report(project=scenario["project"], by=by, version=version)
                for file_format in writers.FORMATS:
                    assert writers.render(report, file_format)
        assert writes(captured) == []
    assert VersionLaborIndex.objects.count() == 3


@pytest.mark.parametrize(("by", "version"), [("version", None), ("version", 4), ("annotator", 4), ("period", None)])
def test_the_labor_report_command_writes_nothing(scenario, tmp_path, by, version):
    argv = ["labor_report", "--project", scenario["project"].slug, "--by", by, "--format", "csv"]
    argv += ["--out", str(tmp_path / "out.csv")] + (["--model-version", str(version)] if version else [])
    with CaptureQueriesContext(connection) as captured:
        if by == "version":
            with pytest.raises(CommandError, match="not indexed yet"):
                call_command(*argv)
        else:
            call_command(*argv)
    assert writes(captured) == []
    assert VersionLaborIndex.objects.count() == 3
