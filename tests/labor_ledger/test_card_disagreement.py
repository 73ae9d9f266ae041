"""The Labor Card answers "what did disagreement cost" (issue 16 item 7), with the version's
agreement, and the version page shows its agreement and aggregation. Scenario: report_helpers
(v2 trains on e1 labeled pos/neg/pos by A/B/C, 10 s each, piece rate 0.01, and e2 by A)."""

import pytest
from django.core.cache import cache
from django.urls import reverse

from labor_ledger.reports import card as labor_card
from training import selectors as training_selectors
from training.hooks import VersionRegistered, version_registered

from .report_helpers import build_scenario

pytestmark = pytest.mark.django_db


@pytest.fixture
def scenario():
    cache.clear()
    scenario = build_scenario()
    for v in scenario["versions"].values():  # as the worker announces them on commit
        version_registered.send(VersionRegistered(version_id=v.pk, project_id=v.project_id))
    return scenario


def test_card_counts_the_labor_spent_on_disagreement(scenario):
    v2 = scenario["versions"][2]
    d = labor_card.labor_card(version=v2, use_cache=False)["disagreement"]
    assert d["contested_texts"] == 1
    assert d["contested"]["labels"] == 3 and d["contested"]["active_hours"] == pytest.approx(30 / 3600, abs=1e-4)
    assert d["contested"]["pay"] == "0.030000"
    assert d["outvoted"]["labels"] == 1 and d["outvoted"]["pay"] == "0.010000"  # bea's "negative"
    assert d["adjudication"]["available"] is False
    agreement = d["agreement"]
    # One text with overlap (pos, neg, pos): alpha = 0 exactly, and no interval from one text.
    assert agreement["alpha"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert agreement["alpha"]["n_units"] == 1 and agreement["alpha"]["low"] is None
    assert agreement["aggregation"] == "majority"


def test_version_without_overlap_says_so(scenario):
    v1 = scenario["versions"][1]
    fig = training_selectors.version_agreement(version=v1, n_boot=20)
    assert fig["alpha"]["value"] is None and fig["n_texts_with_overlap"] == 0
    assert "no overlap" in fig["alpha"]["note"]


def test_pages_show_the_figures(scenario, client):
    project, v2 = scenario["project"], scenario["versions"][2]
    client.force_login(scenario["auditor"])
    card = client.get(reverse("labor_card:version", args=[project.slug, 2])).content.decode()
    assert 'id="card-disagreement"' in card and 'id="disagreement-cost"' in card
    page = client.get(reverse("training-pages:version", args=[project.slug, v2.sequence])).content.decode()
    assert 'id="version-aggregation"' in page and 'id="agreement-figures"' in page
    api = client.get(reverse("training:version-agreement", args=[project.slug, 2]), {"boot": 10})
    assert api.status_code == 200 and api.json()["n_texts_with_overlap"] == 1
    assert client.get(reverse("training:version-agreement", args=[project.slug, 2]), {"boot": "-1"}).status_code == 400
    client.force_login(scenario["A"])
    assert client.get(reverse("training:version-agreement", args=[project.slug, 2])).status_code == 403
