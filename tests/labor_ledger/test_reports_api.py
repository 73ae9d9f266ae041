"""Who may read the Labor Card and the labor reports (admins and auditors; annotators 403,
outsiders 404), that nobody can write through them (403), and that pay is never cached."""

import csv
import io
import json
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from labor_ledger import selectors
from labor_ledger.models import ChainHead, LedgerEntry
from tests.factories import UserFactory
from training.hooks import VersionRegistered, version_registered

from .report_helpers import build_scenario

D = Decimal
KEY = "a-pseudonym-key-for-tests-only-0123"


@pytest.fixture
def scenario(db):
    cache.clear()
    scenario = build_scenario()
    announce(*scenario["versions"].values())
    return scenario


def announce(*versions):
    """Tell the apps above training that versions were registered, as the worker does on commit."""
    for v in versions:
        version_registered.send(VersionRegistered(version_id=v.pk, project_id=v.project_id))


def card_url(scenario, sequence=1):
    return reverse("labor_ledger:labor-card", args=[scenario["project"].slug, sequence])


def report_url(scenario, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("labor_ledger:labor-report", args=[scenario["project"].slug]) + (f"?{query}" if query else "")


def page_url(scenario, sequence=1):
    return reverse("labor_card:version", args=[scenario["project"].slug, sequence])


def ledger_pay(project):
    return LedgerEntry.objects.filter(project=project).aggregate(pay=selectors.TOTALS["pay"]())["pay"]


def no_store(response) -> bool:
    return "no-store" in response.get("Cache-Control", "")


# --- reading ---


@pytest.mark.parametrize("who", ["auditor", "admin"])
def test_admins_and_auditors_read_the_card(scenario, api, who):
    response = api(scenario[who]).get(card_url(scenario, 2))
    assert response.status_code == 200
    assert no_store(response)
    data = response.json()
    head = ChainHead.objects.get(project=scenario["project"])
    assert data["ledger_head"] == {"seq": head.seq, "hash": head.last_hash}
    assert data["scope"]["version"] == 2 and data["pay"]["wage_bill"] == "0.518000"


@pytest.mark.parametrize(
    ("who", "status"),
    [("annotator", 403), ("outsider", 404)],
)
def test_annotators_and_outsiders_cannot_read_it(scenario, api, who, status):
    user = scenario["A"] if who == "annotator" else UserFactory(username="stranger")
    for url in (card_url(scenario), report_url(scenario, by="annotator")):
        response = api(user).get(url)
        assert response.status_code == status
        assert no_store(response)
        assert b"0.58" not in response.content
    page = Client()
    page.force_login(user)
    assert page.get(page_url(scenario)).status_code == status


def test_an_anonymous_visitor_is_refused(scenario, api):
    assert api().get(card_url(scenario)).status_code in (401, 403)
    assert Client().get(page_url(scenario)).status_code == 302  # to the login page


def test_an_unknown_version_is_not_found(scenario, api):
    assert api(scenario["auditor"]).get(card_url(scenario, 9)).status_code == 404
    response = api(scenario["auditor"]).get(report_url(scenario, by="annotator", model_version=9))
    assert response.status_code == 400 and "no model version 9" in response.json()["model_version"][0]


def test_csv_report_download(scenario, api):
    response = api(scenario["auditor"]).get(report_url(scenario, by="annotator", file_format="csv"))
    assert response.status_code == 200 and no_store(response)
    assert response["Content-Type"].startswith("text/csv")
    assert (
        response["Content-Disposition"] == f'attachment; filename="{scenario["project"].slug}-labor-by-annotator.csv"'
    )
    head = ChainHead.objects.get(project=scenario["project"])
    assert (response["X-Tally-Ledger-Head-Seq"], response["X-Tally-Ledger-Head-Hash"]) == (
        str(head.seq),
        head.last_hash,
    )
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert sum(D(r["pay"]) for r in rows) == ledger_pay(scenario["project"])


def test_parquet_and_json_report_downloads(scenario, api):
    client = api(scenario["admin"])
    parquet = client.get(report_url(scenario, by="period", file_format="parquet"))
    assert parquet.status_code == 200 and parquet["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(parquet.content))
    assert sum(table.column("pay").to_pylist()) == ledger_pay(scenario["project"])
    body = client.get(report_url(scenario, by="version", model_version=2, file_format="json"))
    assert body.status_code == 200 and body["Content-Type"] == "application/json"
    data = json.loads(body.content)
    assert [r["version"] for r in data["rows"]] == [2] and data["model_version"] == 2


def test_bad_report_parameters_are_explained(scenario, api, settings):
    client = api(scenario["auditor"])
    assert client.get(report_url(scenario, by="month")).status_code == 400
    assert client.get(report_url(scenario, file_format="xlsx")).status_code == 400
    settings.TALLY_PSEUDONYM_KEY = ""
    response = client.get(report_url(scenario, by="annotator", pseudonymize="true"))
    assert response.status_code == 400 and "TALLY_PSEUDONYM_KEY" in response.json()["pseudonymize"][0]
    assert no_store(response)


def test_pseudonymized_download_has_no_names_or_emails(scenario, api, settings):
    settings.TALLY_PSEUDONYM_KEY = KEY
    response = api(scenario["auditor"]).get(report_url(scenario, by="annotator", pseudonymize="true"))
    assert response.status_code == 200
    for user in (scenario["A"], scenario["B"], scenario["C"]):
        assert user.email.encode() not in response.content
        assert f"\r\n{user.username},".encode() not in response.content


# --- writing: nobody writes through a report ---


WRITES = ["post", "put", "patch", "delete"]


@pytest.mark.parametrize("method", WRITES)
@pytest.mark.parametrize("who", ["auditor", "admin", "annotator"])
def test_every_write_to_a_report_answers_403(scenario, api, method, who):
    user = {"auditor": scenario["auditor"], "admin": scenario["admin"], "annotator": scenario["A"]}[who]
    before = LedgerEntry.objects.count()
    for url in (card_url(scenario), report_url(scenario)):
        response = getattr(api(user), method)(url, {"pay": "1000000"}, format="json")
        assert response.status_code == 403, (url, response.content)
        assert no_store(response)
    assert LedgerEntry.objects.count() == before


@pytest.mark.parametrize("method", WRITES)
def test_writes_from_outsiders_are_not_found(scenario, api, method):
    response = getattr(api(UserFactory(username="stranger")), method)(card_url(scenario), {}, format="json")
    assert response.status_code == 404


def test_an_auditor_cannot_change_the_books_anywhere(scenario, api):
    client = api(scenario["auditor"])
    slug = scenario["project"].slug
    a1 = scenario["annotations"]["a1"]
    attempts = [
        client.post(reverse("labor_ledger:pay-policies", args=[slug]), {"piece_rate": "9"}, format="json"),
        client.post(
            reverse("labor_ledger:manual-entry", args=[slug]),
            {"annotator": "ann", "kind": "bonus", "amount": "5", "reason": "x", "idempotency_key": "k"},
            format="json",
        ),
        client.post(
            reverse("labor_ledger:annotation-review", args=[slug, a1.pk]), {"status": "rejected"}, format="json"
        ),
    ]
    assert [r.status_code for r in attempts] == [403, 403, 403]


# --- the page ---


def test_the_page_shows_the_card_with_its_charts(scenario):
    client = Client()
    client.force_login(scenario["auditor"])
    response = client.get(page_url(scenario, 2))
    assert response.status_code == 200 and no_store(response)
    html = response.content.decode()
    head = ChainHead.objects.get(project=scenario["project"])
    assert f'data-ledger-hash="{head.last_hash}"' in html
    for chart in ("chart-learning-curve", "chart-hours-by-annotator", "chart-wage-distribution"):
        start = html.index(f'id="{chart}"')
        assert "<svg" in html[start : start + 400]
    assert ' style="' not in html  # the page's CSP allows no inline style
    assert 'id="export-annotator-csv"' in html and 'id="export-versions-parquet"' in html
    assert ">0.52 USD<" in html  # the wage bill, 0.518 rounded to cents, with its currency


def test_the_index_lists_the_versions(scenario):
    client = Client()
    client.force_login(scenario["admin"])
    response = client.get(reverse("labor_card:index", args=[scenario["project"].slug]))
    assert response.status_code == 200
    for sequence in (1, 2, 3):
        assert reverse("labor_card:version", args=[scenario["project"].slug, sequence]) in response.content.decode()


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_page_is_read_only(scenario, method):
    client = Client(enforce_csrf_checks=False)
    client.force_login(scenario["auditor"])
    assert getattr(client, method)(page_url(scenario)).status_code == 403
    client.force_login(scenario["admin"])
    assert getattr(client, method)(page_url(scenario)).status_code == 403
