"""Figures an auditor would sign (issue 14, items 4, 5 and 8): projected top-ups for periods not
settled yet, floor rates from the policy, integer columns, label counts, paid by category, one
annotator count, one naming, readable durations and money, the datasheet, and the reconciliation
of the earnings page, the Labor Card and the exports to the cent."""

import csv
import io
import json
import re
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.models import Annotation, Membership
from labor_ledger import pseudonyms, selectors, services, settlement
from labor_ledger.models import LedgerEntry, Settlement
from labor_ledger.reports import build, writers
from labor_ledger.reports import card as labor_card
from tests.factories import UserFactory, add_examples, add_member, make_project
from training import services as training_services
from training.hooks import VersionRegistered, version_registered
from training.models import ModelVersion

from .report_helpers import at, build_scenario, label_text, make_version

D = Decimal
CENT = D("0.01")
KEY = "a-pseudonym-key-for-tests-only-0123"


def announce(*versions):
    for v in versions:
        version_registered.send(VersionRegistered(version_id=v.pk, project_id=v.project_id))


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def rows_of(report) -> list[dict]:
    return list(csv.DictReader(io.StringIO(writers.to_csv(report).decode())))


@pytest.fixture
def two_periods(db, settings):
    """Floor 24.00 per hour (amounts that do not divide evenly), piece 0.01. Day 1 (2030-01-07):
    ann labels 3 texts (10 s, 20 s, 7 s), bea 1 (40 s); settled. Day 2: ann 1 text (13 s), bea 1
    (25 s); not settled: its top-ups are projected. v1 is trained on all six labels."""
    settings.TALLY_PSEUDONYM_KEY = KEY
    cache.clear()
    admin = UserFactory(username="reco-admin")
    project = make_project(admin=admin, name="Reco", labels=("positive", "negative"))
    training_services.config_update(project=project, enabled=False)
    pos, _neg = project.labels.order_by("order", "id")
    texts = add_examples(project, [f"reco text {i}" for i in range(1, 7)])
    a = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="ann"))
    b = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="bea"))
    auditor = add_member(project, Membership.Role.AUDITOR, UserFactory(username="audrey"))
    services.pay_policy_create(
        project=project, created_by=admin, effective_from=at(-3600), now=at(-3600),
        piece_rate=D("0.01"), floor_hourly_rate=D("24.00"), client_price_per_example=D("1.00"),
    )  # fmt: skip
    made = [
        label_text(project, a, texts[0], start=at(0), seconds=10, label=pos),
        label_text(project, a, texts[1], start=at(600), seconds=20, label=pos),
        label_text(project, a, texts[2], start=at(1200), seconds=7, label=pos),
        label_text(project, b, texts[3], start=at(1800), seconds=40, label=pos),
    ]
    settlement.settle_due(project=project, now=at(days=1))
    made += [
        label_text(project, a, texts[4], start=at(3600, days=1), seconds=13, label=pos),
        label_text(project, b, texts[5], start=at(4200, days=1), seconds=25, label=pos),
    ]
    v1 = make_version(project, sequence=1, annotations=made, snapshot_at=at(7200, days=1), accuracy=0.5)
    announce(v1)
    return {"project": project, "admin": admin, "auditor": auditor, "A": a, "B": b, "v1": v1}


# --- item 4: projected top-ups ------------------------------------------------------------------


def test_projected_top_ups_are_read_never_written(two_periods):
    project, a = two_periods["project"], two_periods["A"]
    entries = LedgerEntry.objects.count()
    earnings = selectors.earnings_for(project=project, annotator=a)
    day2 = next(p for p in earnings.periods if p.period == at(days=1).date())
    # 13 s at 24.00/h: floor 0.086667, pay 0.01 -> settlement would top up 0.076667
    assert not day2.is_settled and day2.projected_top_up == D("0.076667")
    report = build.labor_report(project=project, by="annotator")
    by_name = {r["annotator"]: r for r in report.frame.to_dict("records")}
    assert by_name["ann"]["projected_top_up"] == D("0.076667")
    assert by_name["ann"]["wage_bill"] == by_name["ann"]["pay"] + D("0.076667")
    periods = build.labor_report(project=project, by="period").frame
    assert list(periods["projected_top_up"]) == [D(0), D("0.076667") + D("0.156667")]  # bea: 25 s -> 0.166667
    card = labor_card.build_card(project=project, version=two_periods["v1"])
    assert D(card["pay"]["projected_top_up"]) == D("0.233334")
    assert card["pay"]["projected_label"] == "projected, period open"
    assert LedgerEntry.objects.count() == entries  # computed by reading


def test_settling_replaces_the_projection_with_the_settled_top_up(two_periods):
    project, a = two_periods["project"], two_periods["A"]
    before = selectors.earnings_for(project=project, annotator=a)
    settlement.settle_due(project=project, now=at(days=2))
    after = selectors.earnings_for(project=project, annotator=a)
    day2 = next(p for p in after.periods if p.period == at(days=1).date())
    assert day2.is_settled and day2.projected_top_up == D("0.076667") == day2.settlement.top_up
    assert after.projected_top_up == 0
    assert after.total.quantize(CENT) == before.total.quantize(CENT)
    report = build.labor_report(project=project, by="annotator")
    assert all(r["projected_top_up"] == 0 for r in report.frame.to_dict("records"))


def test_floor_rate_is_the_policys_exact_rate(two_periods):
    """Back-computed from rounded floor amounts it was 23.999953-24.000044 for a 24.00 policy."""
    project = two_periods["project"]
    for by in ("annotator", "period", "project"):
        frame = build.labor_report(project=project, by=by).frame
        assert set(frame["floor_hourly_rate"]) == {D("24.000000")}, by
    versions = build.labor_report(project=project, by="version").frame
    assert list(versions["floor_hourly_rate"]) == [D("24.000000")]
    card = labor_card.build_card(project=project, version=two_periods["v1"])
    assert card["pay"]["floor_hourly_rate"] == "24.000000"
    assert {a["floor_hourly_rate"] for a in card["annotators"]} == {"24.000000"}


def test_version_exports_print_integer_columns_as_integers(two_periods):
    project, v1 = two_periods["project"], two_periods["v1"]
    make_version(project, sequence=2, parent=v1, annotations=[], snapshot_at=at(9000, days=1), accuracy=0.6)
    announce(ModelVersion.objects.get(project=project, sequence=2))
    report = build.labor_report(project=project, by="version")
    rows = rows_of(report)
    assert [r["parent_version"] for r in rows] == ["", "1"]
    assert [r["eval_size"] for r in rows] == ["100", "100"]
    payload = json.loads(writers.to_json(report))
    assert [r["parent_version"] for r in payload["rows"]] == [None, 1]
    assert [r["eval_size"] for r in payload["rows"]] == [100, 100]


@pytest.fixture
def scenario(db):
    cache.clear()
    scenario = build_scenario()
    announce(*scenario["versions"].values())
    return scenario


def test_whole_ledger_report_by_annotator_counts_labels(scenario):
    frame = build.labor_report(project=scenario["project"], by="annotator").frame
    assert dict(zip(frame["annotator"], frame["labels"], strict=True)) == {"ann": 2, "bea": 2, "cy": 1}


def test_earnings_api_counts_piece_pay_under_submitted(scenario):
    response = client_for(scenario["A"]).get(reverse("labor_ledger:earnings", args=[scenario["project"].slug]))
    body = response.json()
    paid = {row["time_category"]: D(row["paid"]) for row in body["time_by_category"]}
    assert paid["submitted"] == D("0.02")  # two accepted labels at 0.01 (was 0.000000)
    lines = sum((D(line["paid"]) for line in body["other_lines"]), D(0))
    assert sum(paid.values()) + lines == D(body["total"]) == D("0.60")  # A's settled payable


def test_machine_accepted_labels_have_their_own_row_and_one_annotator_count(scenario):
    project, admin = scenario["project"], scenario["admin"]
    e5 = project.examples.get(text="text 5")
    machine = Annotation.objects.create(
        project=project, example=e5, annotator=admin, source=Annotation.Source.MACHINE, created_at=at(4500)
    )
    machine.labels.add(scenario["labels"][0])
    a1, a2 = scenario["annotations"]["a1"], scenario["annotations"]["a4"]
    v4 = make_version(project, sequence=4, parent=None, annotations=[a1, a2, machine], snapshot_at=at(5000))
    announce(v4)
    card = labor_card.build_card(project=project, version=v4)
    assert card["scope"]["annotators"] == card["labor"]["annotators"] == len(card["annotators"]) == 2
    assert card["machine_labels_row"] == {"annotator": "machine-accepted labels", "no_labor": True, "labels": 1}
    html = client_for(admin).get(reverse("labor_card:version", args=[project.slug, 4])).content.decode()
    assert html.count('class="card-annotator') == 2 and 'data-annotator="machine"' in html


def test_the_card_and_its_exports_name_annotators_alike(scenario, settings):
    settings.TALLY_PSEUDONYM_KEY = KEY
    project, auditor = scenario["project"], scenario["auditor"]
    client = client_for(auditor)
    html = client.get(reverse("labor_card:version", args=[project.slug, 2])).content.decode()
    link = re.search(r'id="export-annotator-csv"[^>]*href="([^"]+)"', html).group(1).replace("&amp;", "&")
    exported = {r["annotator"] for r in csv.DictReader(io.StringIO(client.get(link).content.decode()))}
    card = client.get(reverse("labor_ledger:labor-card", args=[project.slug, 2])).json()
    assert exported == {a["annotator"] for a in card["annotators"]}
    assert all(name.startswith(pseudonyms.PREFIX) for name in exported)


# --- item 5: readable figures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [("3.1", "0:03"), ("0", "0:00"), ("59.5", "1:00"), ("3599.4", "59:59"), ("3600", "1:00:00"), ("45296", "12:34:56")],
)
def test_durations_read_as_h_mm_ss(seconds, text):
    from labor_ledger.templatetags.ledger_format import duration

    assert duration(D(seconds)) == text


def test_money_on_pages_has_its_currency_and_the_minor_unit():
    from labor_ledger.templatetags.ledger_format import money_with_currency

    assert money_with_currency(D("0.525"), "USD") == "0.53 USD"
    assert money_with_currency(D("12"), "JPY") == "12 JPY"


def test_earnings_page_by_day_with_a_chart_and_categories_that_add_up(two_periods):
    client = client_for(two_periods["A"])
    html = client.get(reverse("earnings:project", args=[two_periods["project"].slug])).content.decode()
    assert "<svg" in html and 'id="earnings-day-chart"' in html and "style=" not in html.split("<svg", 1)[1]
    assert "projected, period open" in html
    assert re.search(r'id="today-pay">[0-9.]+ USD<', html)
    categories = [D(x) for x in re.findall(r'class="num category-paid" data-amount="([-0-9.]+)"', html)]
    lines = [D(x) for x in re.findall(r'class="num line-paid" data-amount="([-0-9.]+)"', html)]
    total = D(re.search(r'id="earnings-total" data-amount="([-0-9.]+)"', html).group(1))
    assert sum(categories) + sum(lines) == total
    assert re.search(r'class="num period-active-hours">0:13<', html)  # day 2: 13 s, not "0.00"


# --- item 8: the datasheet --------------------------------------------------------------------


def test_datasheet_as_markdown_and_json_for_readers_only(two_periods):
    project = two_periods["project"]
    url = reverse("labor_ledger:datasheet", args=[project.slug, 1])
    auditor = client_for(two_periods["auditor"])
    sheet = auditor.get(url, {"format": "json"})
    assert sheet.status_code == 200 and "no-store" in sheet["Cache-Control"]
    body = sheet.json()
    assert body["who_labeled"]["annotators"] == 2 and body["who_labeled"]["human_labels"] == 6
    assert body["compensation"]["policies"][0]["floor_hourly_rate"] == "24.000000"
    assert D(body["compensation"]["floor_top_up_projected"]) == D("0.233334")
    assert body["timeframe"]["first_labor_at"].startswith("2030-01-07")
    md = auditor.get(url, {"format": "md"})
    assert md.status_code == 200 and md["Content-Type"].startswith("text/markdown")
    assert 'filename="reco-v1-datasheet.md"' in md["Content-Disposition"]
    text = md.content.decode()
    assert "How were they compensated" in text and "24.000000 USD per hour worked" in text
    assert "projected, period open" in text
    assert client_for(two_periods["A"]).get(url, {"format": "md"}).status_code == 403
    assert client_for(UserFactory()).get(url, {"format": "json"}).status_code == 404
    assert auditor.post(url).status_code == 403
    card_html = client_for(two_periods["admin"]).get(reverse("labor_card:version", args=[project.slug, 1]))
    assert f"{url}?format=md" in card_html.content.decode()


# --- Done when: the reconciliation ------------------------------------------------------------


def _page_total(client, project) -> D:
    html = client.get(reverse("earnings:project", args=[project.slug])).content.decode()
    return D(re.search(r'id="earnings-total" data-amount="([-0-9.]+)"', html).group(1))


def test_earnings_page_labor_card_and_exports_agree_to_the_cent(two_periods):
    """Two periods, the first settled (top-ups and rounding written), the second open (top-ups
    projected): per annotator, the earnings page's total, the card's wage bill (page and JSON)
    and the CSV and JSON exports (whole ledger and scoped to v1) are the same to the cent."""
    project, v1 = two_periods["project"], two_periods["v1"]
    assert Settlement.objects.filter(project=project).count() == 2  # day 1, both annotators
    reader = client_for(two_periods["auditor"])
    card = reader.get(reverse("labor_ledger:labor-card", args=[project.slug, 1])).json()
    card_html = reader.get(reverse("labor_card:version", args=[project.slug, 1])).content.decode()
    card_page = {
        name: D(amount)
        for name, amount in re.findall(
            r'data-annotator="([^"]+)">.*?class="num annotator-wage-bill" data-amount="([-0-9.]+)"', card_html, re.S
        )
    }
    api = reverse("labor_ledger:labor-report", args=[project.slug])
    exports = {}
    for scope in ("", "&model_version=1"):
        for fmt in ("csv", "json"):
            body = reader.get(f"{api}?by=annotator&pseudonymize=true&file_format={fmt}{scope}").content.decode()
            rows = list(csv.DictReader(io.StringIO(body))) if fmt == "csv" else json.loads(body)["rows"]
            exports[(scope, fmt)] = {r["annotator"]: D(r["wage_bill"]) for r in rows}
    card_total = D(card["pay"]["wage_bill"])
    projected = D(0)
    pages = D(0)
    for person in (two_periods["A"], two_periods["B"]):
        name = pseudonyms.pseudonym(person.pk)
        page = _page_total(client_for(person), project)
        earnings = selectors.earnings_for(project=project, annotator=person, now=timezone.now())
        projected += earnings.projected_top_up
        pages += page
        card_row = next(a for a in card["annotators"] if a["annotator"] == name)
        figures = [D(card_row["wage_bill"]), card_page[name], *(e[name] for e in exports.values())]
        assert {f.quantize(CENT) for f in figures} == {page.quantize(CENT)}, (person.username, page, figures)
    assert earnings.projected_top_up > 0
    assert card_total.quantize(CENT) == pages.quantize(CENT)
    assert D(card["pay"]["projected_top_up"]).quantize(CENT) == projected.quantize(CENT) > 0
    version_row = build.labor_report(project=project, by="version").frame.iloc[0]
    assert version_row["wage_bill"].quantize(CENT) == pages.quantize(CENT)
    assert v1.sequence == 1
