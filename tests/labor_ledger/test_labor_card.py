"""The Labor Card's data on the hand-worked project of report_helpers.py; its energy estimate,
charts and cache."""

import json
import re
from decimal import Decimal
from unittest import mock

import pytest
from django.core.cache import cache

from core.svg import inline_svg
from labor_ledger import charts, services
from labor_ledger.models import ChainHead, LedgerEntry
from labor_ledger.reports import card as labor_card
from training.hooks import VersionRegistered, version_registered

from .report_helpers import at, build_scenario, make_version

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


def card_of(scenario, sequence):
    return labor_card.build_card(project=scenario["project"], version=scenario["versions"][sequence])


def test_scope(scenario):
    card = card_of(scenario, 2)
    scope = card["scope"]
    assert (scope["version"], scope["parent_version"]) == (2, 1)
    assert (scope["examples"], scope["annotations"], scope["annotators"]) == (2, 4, 3)  # e1 thrice, e2
    assert scope["manifest_hash"] == scenario["versions"][2].manifest_hash
    assert (scope["labels_counted"], scope["human_labels"], scope["machine_labels"]) == (4, 4, 0)
    assert scope["accuracy"] == 0.7
    head = ChainHead.objects.get(project=scenario["project"])
    assert card["ledger_head"] == {"seq": head.seq, "hash": head.last_hash}


def test_labor_embodied_unpaid_and_unused(scenario):
    labor = card_of(scenario, 2)["labor"]
    assert labor["active_hours"] == round(50 / 3600, 4)
    assert labor["wall_hours"] == round(50 / 3600, 4)
    assert labor["annotators"] == 3
    # on the books before v2's snapshot: 120 s, of which A's 30 s skip and B's 40 s rejected are unpaid
    assert labor["recorded_active_hours"] == round(120 / 3600, 4)
    unpaid = {row["category"]: row["active_hours"] for row in labor["unpaid"]}
    assert unpaid["skipped"] == round(30 / 3600, 4) and unpaid["rejected"] == round(40 / 3600, 4)
    assert unpaid["expired"] == unpaid["instruction_reading"] == unpaid["retracted"] == 0
    assert labor["unpaid_active_hours"] == round(70 / 3600, 4)
    unused = labor["not_used"]
    assert unused["rejected"]["active_hours"] == round(40 / 3600, 4)
    assert unused["held_out"]["labels"] == 0  # every label accepted before v2 is in v2
    # text e1: a1 positive (A), a4 negative (B), a5 positive (C): three labels contested, a4 outvoted
    assert (unused["contested"]["labels"], unused["contested"]["active_hours"]) == (3, round(30 / 3600, 4))
    assert (unused["outvoted"]["labels"], unused["outvoted"]["active_hours"]) == (1, round(10 / 3600, 4))


def test_labels_left_out_of_training_are_held_out_labor(scenario):
    # v3 = {a1, a4}: a2 (20 s) and a5 (10 s) were accepted before its snapshot but not trained on
    held_out = card_of(scenario, 3)["labor"]["not_used"]["held_out"]
    assert (held_out["labels"], held_out["active_hours"]) == (2, round(30 / 3600, 4))


def test_pay(scenario):
    pay = card_of(scenario, 1)["pay"]
    assert pay["currency"] == "USD"
    assert (pay["piece_pay"], pay["hourly_pay"], pay["floor_top_up"]) == ("0.020000", "0.000000", "0.682000")
    assert (pay["wage_bill"], pay["direct_pay"], pay["allocated_pay"]) == ("0.702000", "0.020000", "0.682000")
    assert pay["effective_hourly_wage"] == {
        "p10": "35.472000",
        "median": "36.240000",
        "p90": "37.008000",
        "annotators": 2,
    }
    assert pay["floor_hourly_rate"] == "36.000000"
    assert pay["below_floor_before_top_up"] == 2
    assert (pay["client_price"], pay["client_share"]) == ("2.000000", "0.351000")
    # v1 was trained before the day was settled: nobody had been topped up yet
    assert pay["topped_up_in_settlement"] == 0


def test_annotators_topped_up_in_settlements_before_training(scenario):
    ann = scenario["annotations"]
    later = make_version(
        scenario["project"],
        sequence=4,
        parent=scenario["versions"][2],
        annotations=[ann["a1"], ann["a4"], ann["a5"]],
        snapshot_at=at(days=2),
    )
    announce(later)
    card = labor_card.build_card(project=scenario["project"], version=later)
    assert card["pay"]["topped_up_in_settlement"] == 3  # all three were topped up on 2030-01-07


def test_increment(scenario):
    inc = card_of(scenario, 2)["increment"]
    assert (inc["parent_version"], inc["new_labels"], inc["dropped_labels"]) == (1, 2, 1)
    assert inc["new_active_hours"] == round(20 / 3600, 4)
    assert inc["new_wage_bill"] == "0.208000"
    assert inc["accuracy_change"] == pytest.approx(0.1)
    assert inc["accuracy_change_per_labor_hour"] == pytest.approx(18.0)
    assert inc["accuracy_change_per_currency_unit"] == pytest.approx(0.1 / 0.208, rel=1e-6)
    assert inc["same_evaluation_set"] is None  # the versions recorded no evaluation-set hash
    first = card_of(scenario, 1)["increment"]
    assert first["parent_version"] is None and first["accuracy_change"] is None and first["new_labels"] == 3


def test_history_and_stack_cover_the_versions_up_to_this_one(scenario):
    card = card_of(scenario, 2)
    assert [h["version"] for h in card["history"]] == [1, 2]
    assert [h["embodied_hours"] for h in card["history"]] == [round(70 / 3600, 4), round(50 / 3600, 4)]
    assert [h["recorded_hours"] for h in card["history"]] == [round(100 / 3600, 4), round(120 / 3600, 4)]
    assert card["stack"]["versions"] == [1, 2]
    by_name = {s["annotator"]: s["hours"] for s in card["stack"]["series"]}
    assert sorted(map(tuple, by_name.values())) == sorted(
        [(round(30 / 3600, 4),) * 2, (round(40 / 3600, 4), round(10 / 3600, 4)), (0.0, round(10 / 3600, 4))]
    )


def test_annotators_appear_as_ranks_without_a_key_and_pseudonyms_with_one(scenario, settings):
    settings.TALLY_PSEUDONYM_KEY = ""
    card = card_of(scenario, 2)
    assert card["annotator_names"] == "rank"
    assert [a["annotator"] for a in card["annotators"]] == ["annotator #1", "annotator #2", "annotator #3"]
    settings.TALLY_PSEUDONYM_KEY = KEY
    card = card_of(scenario, 2)
    assert card["annotator_names"] == "hmac"
    text = json.dumps(card)
    for user in (scenario["A"], scenario["B"], scenario["C"]):
        assert user.email not in text
        assert f'"{user.username}"' not in text
    assert all(re.fullmatch(r"anon-[0-9a-f]{16}", a["annotator"]) for a in card["annotators"])


@pytest.mark.parametrize(
    ("device", "device_name", "metrics", "expected_wh", "basis"),
    [
        ("cpu", "cpu: x86_64, 2 threads", {}, 12 * 2 * 50 / 3600, "estimate"),
        ("cpu", "cpu: x86_64, 8 threads", {}, 12 * 8 * 50 / 3600, "estimate"),
        ("cuda", "NVIDIA H100 80GB HBM3", {}, 200 * 50 / 3600, "estimate"),
        ("cuda", "NVIDIA H100 80GB HBM3", {"gpu_power_watts": 310.0}, 310 * 50 / 3600, "measured"),
        ("cuda", "NVIDIA H100 80GB HBM3", {"energy": {"joules": 7200.0, "source": "nvidia-smi"}}, 2.0, "measured"),
    ],
)
def test_energy_estimate(device, device_name, metrics, expected_wh, basis):
    energy = labor_card.energy_estimate(device=device, device_name=device_name, metrics=metrics, seconds=50.0)
    assert energy["energy_wh"] == pytest.approx(expected_wh, abs=1e-4)
    assert energy["basis"] == basis
    assert energy["method"]


def test_compute_beside_labor(scenario):
    compute = card_of(scenario, 1)["compute"]
    assert (compute["device"], compute["training_seconds"], compute["embedding_seconds"]) == ("cpu", 30.0, 15.0)
    assert compute["compute_seconds"] == 50.0
    assert compute["energy_wh"] == pytest.approx(12 * 2 * 50 / 3600, abs=1e-4)  # 2 threads, 12 W per core
    assert compute["human_active_hours"] == round(70 / 3600, 4)


def test_the_card_is_cached_until_the_ledger_moves(scenario):
    version = scenario["versions"][1]
    first = labor_card.labor_card(version=version)
    with mock.patch.object(labor_card, "build_card", wraps=labor_card.build_card) as build:
        assert labor_card.labor_card(version=version) == first
        assert build.call_count == 0
        services.manual_entry_create(
            project=scenario["project"],
            annotator=scenario["A"],
            kind=LedgerEntry.Kind.BONUS,
            amount=Decimal("0.60"),
            reason="thanks",
            actor=scenario["admin"],
            idempotency_key="bonus-1",
            now=at(days=2),
        )
        moved = labor_card.labor_card(version=version)
        assert build.call_count == 1
    assert moved["ledger_head"]["seq"] == first["ledger_head"]["seq"] + 1
    # A's bonus 0.60 over 60 s worked, 30 s of them in v1: 0.30 allocated to v1
    assert moved["pay"]["bonus"] == "0.300000"


def test_charts_are_inline_svg_a_strict_csp_page_can_show(scenario):
    card = card_of(scenario, 2)
    drawn = labor_card.card_charts(card)
    assert set(drawn) == {"learning_curve", "hours_by_annotator", "wage_distribution"}
    for name, svg in drawn.items():
        assert svg.startswith("<svg") and svg.endswith("</svg>")
        assert 'role="img"' in svg and "<title" in svg
        assert "<style" not in svg and " style=" not in svg  # CSP forbids inline styles
        assert "<script" not in svg and "http://www.w3.org/2000/svg" in svg
        prefix = name.replace("_", "-")
        assert all(i.startswith(prefix + "-") for i in re.findall(r'\bid="([^"]+)"', svg))
    assert "v2" in drawn["learning_curve"]
    assert "36.00" in drawn["wage_distribution"]  # the floor line's label


def test_inline_svg_turns_styles_into_attributes():
    svg = (
        '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10pt"><defs>'
        "<style>*{stroke-linejoin: round}</style></defs>"
        '<g id="a"><path clip-path="url(#c)" style="fill: #ffffff; stroke-width: 0.8"/>'
        '<use xlink:href="#m" style="font-family: \'DejaVu Sans\'"/></g></svg>'
    )
    out = inline_svg(svg, prefix="p", title="T & U")
    assert out.startswith("<svg") and "<style" not in out and "style=" not in out
    assert 'fill="#ffffff" stroke-width="0.8"' in out
    assert "font-family=\"'DejaVu Sans'\"" in out
    assert 'id="p-a"' in out and "url(#p-c)" in out and 'xlink:href="#p-m"' in out
    assert '<title id="p-title">T &amp; U</title>' in out


def test_charts_without_data_say_so():
    assert "No version has a held-out accuracy yet" in charts.learning_curve([], current=1)
    assert "No human labor" in charts.hours_by_annotator({"versions": [], "series": []})
    assert "No hours worked" in charts.wage_distribution([], floor=None, currency="EUR")
