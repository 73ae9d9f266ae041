"""Agreement figures from the database: the project's (admins and auditors, API, console page,
CSV), one's own (annotators: nothing about anyone else, no gold label), Dawid-Skene's
reliability, and the choice of Dawid-Skene as the training targets."""

import csv
import io
from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from annotation import agreement
from annotation.models import Example, Membership
from core import agreement as ag
from tests.factories import UserFactory, add_examples, add_member, make_project
from tests.support.annotators import label_next
from training import selectors as training_selectors
from training import services as training_services
from training.models import Aggregation

pytestmark = pytest.mark.django_db

TEXTS = [f"text {i}" for i in range(12)]


def truth_of(text):
    return "positive" if int(text.split()[1]) % 2 else "negative"


@pytest.fixture
def overlap():
    """Two annotators label every one of 12 texts (overlap 2): ann always right, bob wrong on
    texts 0-3; texts 0-5 carry gold (the truth)."""
    admin = UserFactory(username="lead")
    project = make_project(admin=admin, name="Overlap", annotations_per_example=2)
    training_services.config_update(project=project, enabled=False)
    add_examples(project, TEXTS)
    labels = dict(project.labels.values_list("name", "pk"))
    for ex in Example.objects.filter(project=project, text__in=TEXTS[:6]):
        ex.gold_label_id = labels[truth_of(ex.text)]
        ex.save(update_fields=["gold_label"])
    ann = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="ann"))
    bob = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="bob"))
    auditor = add_member(project, Membership.Role.AUDITOR, UserFactory(username="audrey"))
    label_next(project, ann, lambda text: [truth_of(text)], n=None)

    def bob_says(text):
        wrong = int(text.split()[1]) < 4
        right = truth_of(text)
        return [("negative" if right == "positive" else "positive") if wrong else right]

    label_next(project, bob, bob_says, n=None)
    return {"project": project, "admin": admin, "ann": ann, "bob": bob, "auditor": auditor}


def test_project_figures_match_the_pure_module(overlap):
    project = overlap["project"]
    fig = agreement.project_agreement(project=project, n_boot=50)
    assert fig["n_annotations"] == 24 and fig["n_texts_with_overlap"] == 12
    r = agreement.ratings_for(project=project)
    assert fig["alpha"]["value"] == pytest.approx(ag.alpha(r.unit, r.value, n_boot=0).value)
    assert fig["percent_agreement"]["value"] == pytest.approx(8 / 12)
    assert fig["alpha"]["low"] is not None and fig["alpha"]["n_units"] == 12
    (pair,) = fig["pairs"]
    assert {pair["a"], pair["b"]} == {"ann", "bob"} and pair["agreement"] == pytest.approx(8 / 12)
    by = {a["annotator"]: a for a in fig["annotators"]}
    assert by["ann"]["vs_gold"]["accuracy"]["value"] == 1.0
    assert by["bob"]["vs_gold"]["accuracy"]["value"] == pytest.approx(2 / 6)
    assert [p["n_annotations"] for p in fig["periods"]] == [24]


def test_no_overlap_is_said_plainly():
    project = make_project(name="Solo")
    add_examples(project, TEXTS[:3])
    ann = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="solo"))
    label_next(project, ann, lambda text: ["positive"], n=None)
    fig = agreement.project_agreement(project=project, n_boot=20)
    assert fig["alpha"]["value"] is None and "no overlap" in fig["alpha"]["note"]
    assert fig["note"] == agreement.NO_OVERLAP


def test_api_is_for_readers_and_annotators_see_only_their_own(overlap, api):
    project = overlap["project"]
    url = reverse("annotation:agreement", args=[project.slug])
    assert api(overlap["auditor"]).get(url, {"boot": 20}).status_code == 200
    assert api(overlap["admin"]).get(url, {"boot": 20, "label": "positive"}).status_code == 200
    assert api(overlap["admin"]).get(url, {"label": "nope"}).status_code == 400
    assert api(overlap["admin"]).get(url, {"boot": "x"}).status_code == 400
    assert api(overlap["ann"]).get(url).status_code == 403
    assert api(overlap["ann"]).get(reverse("annotation:agreement-reliability", args=[project.slug])).status_code == 403
    mine = api(overlap["bob"]).get(reverse("annotation:agreement-mine", args=[project.slug]))
    assert mine.status_code == 200
    body = mine.content.decode()
    assert "ann" not in body and "positive" not in body and "negative" not in body  # no one else, no gold label
    (week,) = mine.json()["periods"]
    # This week is still open: its figures would move with each label and tell which matched.
    assert week["agreement_with_others"]["value"] is None and "period ends" in week["agreement_with_others"]["note"]
    assert week["n_labels"] == 12
    # Once the week is over: agreement over 12 texts is shown, gold accuracy over 6 is not (< 10).
    later = timezone.now() + timedelta(days=8)
    past = agreement.own_agreement(project=project, user=overlap["bob"], now=later)["periods"][0]
    assert past["agreement_with_others"]["value"] == pytest.approx(8 / 12)
    assert past["gold_accuracy"]["value"] is None and "fewer than 10" in past["gold_accuracy"]["note"]
    assert past["gold_accuracy"]["n_units"] == 6


def test_dawid_skene_reliability_and_training_targets(overlap, api):
    project = overlap["project"]
    rel = api(overlap["admin"]).get(reverse("annotation:agreement-reliability", args=[project.slug])).json()
    by = {a["annotator"]: a for a in rel["annotators"]}
    assert set(by) == {"ann", "bob"} and len(by["ann"]["confusion"]) == 2
    config = training_selectors.training_config(project=project)
    majority = training_selectors.training_snapshot(project=project, config=config)
    training_services.config_update(project=project, aggregation=Aggregation.DAWID_SKENE)
    config = training_selectors.training_config(project=project)
    ds = training_selectors.training_snapshot(project=project, config=config)
    assert (majority.aggregation, ds.aggregation) == ("majority", "dawid_skene")
    assert majority.manifest == ds.manifest
    assert not np.allclose(majority.train_targets, ds.train_targets)  # ties of the vote are broken by DS
    np.testing.assert_allclose(ds.train_targets.sum(1), 1.0, atol=1e-5)
    assert training_selectors.manifest_hash(ds.manifest, ds.aggregation) != training_selectors.manifest_hash(
        majority.manifest, majority.aggregation
    )


def test_dawid_skene_is_refused_for_multi_label_projects(api):
    admin = UserFactory(username="multi-admin")
    project = make_project(admin=admin, name="Multi", label_mode="multi")
    url = reverse("training:config", args=[project.slug])
    response = api(admin).patch(url, {"aggregation": "dawid_skene"}, format="json")
    assert response.status_code == 400


def test_console_pages_and_csv(overlap, client):
    project = overlap["project"]
    client.force_login(overlap["auditor"])
    dashboard = client.get(reverse("console:dashboard", args=[project.slug])).content.decode()
    assert 'id="agreement-figures"' in dashboard and "Krippendorff" in dashboard
    page = client.get(reverse("console:agreement", args=[project.slug])).content.decode()
    assert 'id="reliability-table"' in page and 'data-annotator="bob"' in page
    rows = list(
        csv.DictReader(io.StringIO(client.get(reverse("console:agreement-csv", args=[project.slug])).content.decode()))
    )
    assert {"project", "annotator", "pair", "label", "period"} <= {r["scope"] for r in rows}
    client.force_login(overlap["ann"])
    assert client.get(reverse("console:agreement", args=[project.slug])).status_code == 403
    earnings = client.get(reverse("earnings:project", args=[project.slug])).content.decode()
    assert 'id="own-agreement"' in earnings and "bob" not in earnings


def test_cached_figures_follow_the_labels(overlap):
    project = overlap["project"]
    before = agreement.project_figures_cached(project=project, n_boot=10)
    assert agreement.project_figures_cached(project=project, n_boot=10) == before
    late = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="late"))
    project.annotations_per_example = 3
    project.save(update_fields=["annotations_per_example"])
    label_next(project, late, lambda text: ["positive"], n=2)
    after = agreement.project_figures_cached(project=project, n_boot=10)
    assert after["n_annotations"] == before["n_annotations"] + 2


def test_multi_label_projects_get_masi_and_per_label_alpha():
    admin = UserFactory(username="multi-lead")
    project = make_project(
        admin=admin, name="Topics", labels=("a", "b", "c"), label_mode="multi", annotations_per_example=2
    )
    add_examples(project, TEXTS[:6])
    first = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="m1"))
    second = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="m2"))
    label_next(project, first, lambda text: ["a", "b"], n=None)
    label_next(project, second, lambda text: ["a"] if int(text.split()[1]) % 2 else ["a", "b"], n=None)
    fig = agreement.project_agreement(project=project, n_boot=20)
    r = agreement.ratings_for(project=project)
    assert sorted(set(r.mask.tolist())) == [0b001, 0b011]
    assert fig["alpha_masi"]["value"] == pytest.approx(ag.alpha_masi(r.unit, r.mask, n_boot=0).value)
    per_label = {row["label"]: row for row in fig["per_label"]}
    assert per_label["a"]["alpha"]["value"] is None  # everyone chose "a": nothing to tell apart
    assert per_label["b"]["n_chosen"] == 9 and per_label["c"]["n_chosen"] == 0
    # Two distinct sets only: MASI's one distance (2/3) cancels in D_o / D_e, as alpha is
    # invariant to scaling the distance, so it equals the nominal alpha over sets.
    assert fig["alpha_masi"]["value"] == pytest.approx(fig["alpha"]["value"])
