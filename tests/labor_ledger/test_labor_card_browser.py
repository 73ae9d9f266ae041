"""End to end (issue #5, "Done when"): an auditor logs in, opens a model version's Labor Card,
sees its charts, downloads the CSV and Parquet exports, whose totals match the ledger, and
cannot change anything: every write answers 403."""

import csv
import io
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.core.cache import cache
from playwright.sync_api import expect

from labor_ledger import selectors
from labor_ledger.models import Balance, ChainHead, LedgerEntry, PayPolicy
from tests.support.browser import log_in
from training.hooks import VersionRegistered, version_registered

from .report_helpers import build_scenario

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
D = Decimal


@pytest.fixture
def scenario(settings):
    settings.TALLY_PSEUDONYM_KEY = "a-pseudonym-key-for-the-browser-test"
    cache.clear()
    scenario = build_scenario()
    for v in scenario["versions"].values():  # registered: the worker indexes each (labor_index.py)
        version_registered.send(VersionRegistered(version_id=v.pk, project_id=v.project_id))
    return scenario


def ledger_sums(entries) -> dict:
    return entries.aggregate(**{name: make() for name, make in selectors.TOTALS.items()})


def download(on_page, selector: str) -> bytes:
    with on_page.expect_download() as info:
        on_page.locator(selector).click()
    return Path(info.value.path()).read_bytes()


def test_an_auditor_reads_a_labor_card_downloads_its_reports_and_changes_nothing(page, scenario):
    project = scenario["project"]
    v2 = scenario["versions"][2]
    log_in(page, scenario["auditor"].username)

    # the card: from the home page's link to the project's versions
    page.locator("a.labor-cards-link").click()
    page.locator('a.labor-card-link[data-version="2"]').click()
    card = page.locator("#labor-card")
    expect(card).to_have_attribute("data-version", "2")
    head = ChainHead.objects.get(project=project)
    expect(card).to_have_attribute("data-ledger-hash", head.last_hash)
    expect(page.locator("#pay-wage-bill")).to_have_text("0.52 USD")
    expect(page.locator("#increment-new-labels")).to_have_text("2")
    expect(page.locator("#card-annotator-table tr.card-annotator")).to_have_count(3)

    # its charts: drawn on the server, inline SVG with marks in them
    for chart in ("#chart-learning-curve", "#chart-hours-by-annotator", "#chart-wage-distribution"):
        svg = page.locator(f"{chart} svg")
        expect(svg).to_be_visible()
        assert page.locator(f"{chart} svg path").count() > 5
        box = svg.bounding_box()
        assert box["width"] > 200 and box["height"] > 100
    assert page.locator("#chart-hours-by-annotator svg text").filter(has_text="anon-").count() >= 1

    # the version's labor by annotator, as CSV: the direct pay and time are the ledger's own sums
    rows = list(csv.DictReader(io.StringIO(download(page, "#export-annotator-csv").decode())))
    on_labels = ledger_sums(
        LedgerEntry.objects.filter(project=project, annotation_id__in=v2.manifest.values("annotation_id"))
    )
    assert sum(D(r["direct_pay"]) for r in rows) == on_labels["pay"]
    assert sum(D(r["active_seconds"]) for r in rows) == on_labels["active"]
    assert sum(D(r["pay"]) for r in rows) == D("0.518")
    assert {r["ledger_head_hash"] for r in rows} == {head.last_hash}

    # the whole project's labor by annotator (CSV) and by period (Parquet): the ledger's totals
    everything = ledger_sums(LedgerEntry.objects.filter(project=project))
    rows = list(csv.DictReader(io.StringIO(download(page, "#export-project-annotators-csv").decode())))
    assert sum(D(r["pay"]) for r in rows) == everything["pay"] == sum(b.amount for b in Balance.objects.all())
    assert sum(D(r["client_amount"]) for r in rows) == everything["client"]
    table = pq.read_table(io.BytesIO(download(page, "#export-project-periods-parquet")))
    assert sum(table.column("pay").to_pylist()) == everything["pay"]
    assert sum(table.column("active_seconds").to_pylist()) == everything["active"]
    assert sum(table.column("floor_top_up").to_pylist()) == everything["floor_top_up"]
    assert set(table.column("ledger_head_seq").to_pylist()) == {head.seq}
    table = pq.read_table(io.BytesIO(download(page, "#export-versions-parquet")))
    assert table.column("version").to_pylist() == [1, 2, 3]

    # and it changes nothing: every write the auditor tries answers 403
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    headers = {"X-CSRFToken": token, "Referer": page.url}
    api = f"/api/projects/{project.slug}"
    attempts = []
    for url in (f"{api}/labor-reports/", f"{api}/models/2/labor-card/", f"/labor-card/{project.slug}/v2/"):
        for method in ("post", "put", "patch", "delete"):
            response = page.request.fetch(url, method=method.upper(), headers=headers, data={"pay": "1000000"})
            attempts.append((method, url, response.status))
    for url, data in (
        (f"{api}/pay-policies/", {"piece_rate": "100"}),
        (
            f"{api}/ledger/manual-entries/",
            {"annotator": "ann", "kind": "bonus", "amount": "99", "reason": "me", "idempotency_key": "x"},
        ),
        (f"{api}/annotations/{scenario['annotations']['a1'].pk}/review/", {"status": "rejected"}),
    ):
        attempts.append(("post", url, page.request.post(url, headers=headers, data=data).status))
    assert [status for _, _, status in attempts] == [403] * len(attempts), attempts
    assert ChainHead.objects.get(project=project).seq == head.seq
    assert PayPolicy.objects.filter(project=project).count() == 1
    assert page.js_errors == []  # no script error, no refused inline style
