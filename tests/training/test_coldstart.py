"""The queue before and after the first model (issue 12, item 1): a cold start that hands out
every class early whatever the file's order, a diverse head after the first model, and the
reason for each position, which admins and auditors see and annotators never do."""

import random
from collections import Counter

import numpy as np
import pytest
from django.urls import reverse

from annotation.models import Example, Label, Membership, PriorityReason
from tests.annotation.import_helpers import run_import
from tests.factories import UserFactory, add_examples, add_member, make_project
from tests.support.annotators import label_next
from training import coldstart, pipeline, runs, services, tasks
from training.ml.encoder import ENCODER_KEY
from training.ml.sampling import REASONS, cold_start_order, normalize_rows, queue_order
from training.models import ModelVersion, TrainingRun

VOCABULARY = {
    "sports": "goal match striker league coach season tournament referee penalty stadium champion keeper".split(),
    "world": "minister election border treaty embassy parliament refugees ceasefire summit diplomat rebels".split(),
    "business": "shares profit merger quarterly revenue investors stock earnings dividend bank market".split(),
    "science": "telescope genome software quantum laboratory satellite algorithm protein physics chip".split(),
}
FILLER = ["reports say", "on tuesday", "according to sources", "in a statement", "officials noted", "late news"]
PER_CLASS = 50


def sorted_pool(seed: int = 0) -> dict[str, str]:
    """{text: class}, 4 classes x 50 texts, in class order (as an export grouped by class)."""
    rng = random.Random(seed)
    pool = {}
    for label, words in VOCABULARY.items():
        for i in range(PER_CLASS):
            pool[f"{rng.choice(FILLER)} {' '.join(rng.sample(words, 3))} {rng.choice(FILLER)} item {label[:2]}{i}"] = (
                label
            )
    return pool


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """The cold start's doorbell runs the task's work at once; training runs are called by hand."""
    done = []

    def enqueue_cold_start(project_id):
        done.append(coldstart.cold_start(project_id=project_id))

    monkeypatch.setattr(tasks, "enqueue_cold_start", enqueue_cold_start)
    monkeypatch.setattr(services, "_enqueue", lambda run_id: None)
    return done


@pytest.fixture
def sorted_project(admin_user):
    project = make_project(admin=admin_user, name="Sorted news", labels=tuple(VOCABULARY))
    services.config_update(project=project, model_kind="hashed", min_labels=8)
    return project


@pytest.fixture
def annotator(sorted_project):
    return add_member(sorted_project, Membership.Role.ANNOTATOR, UserFactory(username="ann"))


def csv_of(pool: dict[str, str]) -> bytes:
    return ("text\n" + "".join(f"{t}\n" for t in pool)).encode()


def handed_out(project, annotator, truth, n):
    return [truth[a.example.text] for a in label_next(project, annotator, truth, n=n)]


def test_a_class_sorted_import_hands_out_every_class_in_the_first_16(
    sorted_project, annotator, no_broker, django_capture_on_commit_callbacks
):
    # given a file sorted by class, imported through the import pipeline
    truth = sorted_pool()
    with django_capture_on_commit_callbacks(execute=True):
        batch = run_import(sorted_project, csv_of(truth))
    assert batch.rows_imported == 4 * PER_CLASS
    # then the import's hook ordered the pool (a cluster's most typical text first)
    (summary,) = no_broker
    assert summary["written"] and summary["features"] == "hashed" and summary["clusters"] == 12
    reasons = Counter(Example.objects.filter(project=sorted_project).values_list("priority_reason", flat=True))
    assert reasons == {"cold_start": 4 * PER_CLASS}
    # when an annotator labels what the queue hands out
    first = handed_out(sorted_project, annotator, truth, 16)
    # then every class came up, none more than half the time (file order: 16 of one class)
    assert set(first) == set(VOCABULARY), Counter(first)
    assert max(Counter(first).values()) <= 8


def test_without_the_cold_start_the_file_order_sees_one_class(sorted_project, annotator):
    """The control: what the queue did before this change, and what the test above catches."""
    truth = sorted_pool()
    add_examples(sorted_project, list(truth))  # no import hook: every priority 0, oldest first
    assert set(handed_out(sorted_project, annotator, truth, 16)) == {"sports"}


def test_the_first_version_is_trained_on_every_class(
    sorted_project, annotator, django_capture_on_commit_callbacks, no_broker
):
    # given the sorted file imported and 32 labels (8 per class on average) from the queue
    truth = sorted_pool()
    with django_capture_on_commit_callbacks(execute=True):
        run_import(sorted_project, csv_of(truth))
    with django_capture_on_commit_callbacks(execute=True):
        label_next(sorted_project, annotator, truth, n=32)
    # when the first run trains
    run = TrainingRun.objects.get(project=sorted_project, status="queued")
    version = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=run.pk))
    # then it saw every class, and the model's order replaced the cold start's
    counts = version.metrics["train_label_counts"]
    assert set(counts) == set(VOCABULARY) and min(counts.values()) >= 2, counts
    queue = list(
        Example.objects.filter(project=sorted_project, submitted_count=0)
        .order_by("-priority", "id")
        .values_list("priority_reason", flat=True)[:40]
    )
    assert "cold_start" not in queue
    assert {"uncertainty", "diversity", "qc"} <= set(queue), Counter(queue)
    # a later import (or finished embedding) leaves a model's order alone
    assert coldstart.cold_start(project_id=sorted_project.pk) is None


def test_the_cold_start_uses_minilm_embeddings_when_they_are_all_there(admin_user):
    project = make_project(admin=admin_user, name="Embedded", labels=("a", "b"))
    services.config_update(project=project, model_kind="minilm")
    examples = add_examples(project, [f"text number {i}" for i in range(40)])
    # not embedded yet: the hashed n-grams, nothing waits for the encoder
    assert coldstart.cold_start(project_id=project.pk)["features"] == "hashed"
    rng = np.random.default_rng(0)
    runs.embeddings_store(
        project_id=project.pk,
        encoder_key=ENCODER_KEY,
        example_ids=[e.pk for e in examples],
        vectors=rng.normal(size=(40, 384)).astype(np.float32),
    )
    assert coldstart.cold_start(project_id=project.pk)["features"] == ENCODER_KEY


def test_cold_start_order_takes_one_typical_text_per_cluster_first():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 32)) * 4
    x = normalize_rows(np.concatenate([c + rng.normal(size=(40, 32)) for c in centres]))  # sorted by blob
    order, clusters = cold_start_order(x, 5, rng)
    assert sorted(order.tolist()) == list(range(200))
    assert len(set(order[:5] // 40)) == 5  # the first five positions: one per blob


def test_the_queue_head_skips_near_duplicates_and_gives_a_share_to_diversity():
    # given 20 texts, each with a near-duplicate ranked just below it by uncertainty
    rng = np.random.default_rng(1)
    base = normalize_rows(rng.normal(size=(20, 16)))
    x = normalize_rows(np.repeat(base, 2, axis=0) + 0.01 * rng.normal(size=(40, 16)))
    scores = np.linspace(1.0, 0.0, 40)
    # when the queue is ordered with diversity
    prio, reasons = queue_order(
        scores, qc_share=0.0, rng=rng, vectors=lambda idx: x[idx], diversity_share=0.25, head=20
    )
    head = np.argsort(-prio)[:20]
    # then the head holds one of each pair, and a quarter of it is marked "diversity"
    assert len(set(head // 2)) == 20
    assert Counter(reasons[head])["diversity"] == 5
    # and without vectors the order is the plain uncertainty order
    plain, why = queue_order(scores, qc_share=0.0, rng=rng)
    assert list(np.argsort(-plain)[:4]) == [0, 1, 2, 3] and set(why) == {"uncertainty"}


def test_reason_codes_are_the_example_field_choices():
    # the queue's reasons, plus routing by doubt's (Example.routed_reason), are the choices
    routing = {PriorityReason.DOUBT.value, PriorityReason.DISAGREEMENT.value}
    assert set(REASONS) | routing == set(PriorityReason.values) - {""}


def test_admins_and_auditors_see_why_a_text_is_queued_annotators_never(
    api, client, sorted_project, annotator, admin_user, django_capture_on_commit_callbacks
):
    truth = sorted_pool()
    auditor = add_member(sorted_project, Membership.Role.AUDITOR, UserFactory(username="audrey"))
    with django_capture_on_commit_callbacks(execute=True):
        run_import(sorted_project, csv_of(truth))
    with django_capture_on_commit_callbacks(execute=True):
        label_next(sorted_project, annotator, truth, n=24)
    examples_url = f"/api/projects/{sorted_project.slug}/examples/"
    # before any model: the cold start's reason
    rows = api(admin_user).get(examples_url).json()["results"]
    assert {r["priority_reason"] for r in rows} == {"cold_start"}
    pipeline.execute_run(run_id=TrainingRun.objects.get(project=sorted_project, status="queued").pk)
    for reader in (admin_user, auditor):
        rows = api(reader).get(examples_url, {"page_size": 200}).json()["results"]
        assert {r["priority_reason"] for r in rows} - {""} <= set(REASONS)
        predictions = api(reader).get(
            reverse("training:prediction-list", kwargs={"slug": sorted_project.slug}), {"ordering": "-priority"}
        )
        head = [p["priority_reason"] for p in predictions.json()["results"][:20]]
        assert set(head) <= {"uncertainty", "diversity", "qc", "gold"} and "uncertainty" in head
    # annotators: their own examples, without priority or reason; no predictions at all
    mine = api(annotator).get(examples_url).json()["results"]
    assert mine and all("priority_reason" not in r and "priority" not in r for r in mine)
    assert (
        api(annotator).get(reverse("training:prediction-list", kwargs={"slug": sorted_project.slug})).status_code == 403
    )
    # the version page's least certain table says why each is queued
    client.force_login(admin_user)
    html = client.get(reverse("training-pages:version", kwargs={"slug": sorted_project.slug, "sequence": 1}))
    assert "queued for" in html.content.decode()
    assert Label.objects.filter(project=sorted_project).count() == 4
