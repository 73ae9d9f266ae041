"""The MiniLM paths on tiny data: frozen encoder + head (fast loop), and fine-tuning (deep loop).

Loads the real all-MiniLM-L6-v2 from the installed package (a few seconds on CPU)."""

import numpy as np
import pytest

from tests.support.annotators import label_next
from training import pipeline, selectors, services, tasks
from training.ml.encoder import ENCODER_KEY, load_encoder
from training.models import ExampleEmbedding, ModelVersion, Prediction, ProjectTrainingConfig, TrainingRun
from training.worker_cache import worker_cache

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def inline_workers(monkeypatch):
    """Embedding chunks run at once, as if workers were idle; runs are executed by the test."""
    monkeypatch.setattr(services, "_enqueue", lambda run_id: None)
    monkeypatch.setattr(tasks, "enqueue_run", lambda run_id: None)
    monkeypatch.setattr(tasks.embed_chunk, "delay", lambda *args: tasks.embed_chunk.run(*args))
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def minilm_project(toy_project):
    services.config_update(project=toy_project, model_kind="minilm", hyperparams={"epochs": 60})
    return toy_project


def test_mean_pooled_embeddings_are_unit_vectors_and_meaningful():
    encoder = load_encoder("cpu")
    vectors = encoder.embed(["A cat sits on the mat.", "A kitten rests on a rug.", "Stocks fell sharply."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_fast_loop_on_cached_minilm_embeddings(
    minilm_project, labeler, toy, settings, django_capture_on_commit_callbacks
):
    settings.TALLY_EMBED_QUEUE_HEAD = 4  # the run embeds its labels and 4 more; the pool follows
    with django_capture_on_commit_callbacks(execute=True):
        label_next(minilm_project, labeler, toy, n=16)
    run = TrainingRun.objects.get(project=minilm_project, status="queued")
    # the task, as a worker runs it: the run, then the rest of the pool sent to be embedded
    version = ModelVersion.objects.get(pk=tasks.run_training(run.pk))
    assert version.kind == "minilm" and version.encoder_key == ENCODER_KEY
    assert version.embedding_seconds > 0
    # the whole pool got embedded (chunks) and cached once per example
    assert ExampleEmbedding.objects.filter(project=minilm_project, encoder_key=ENCODER_KEY).count() == 40
    progress = selectors.embedding_progress(project=minilm_project, encoder_key=ENCODER_KEY)
    assert progress == {"encoder": ENCODER_KEY, "total": 40, "embedded": 40, "done": True}
    # the first run scored what was embedded; the finished embeddings queued a run for the rest
    follow_up = TrainingRun.objects.get(project=minilm_project, status="queued")
    assert follow_up.trigger == "embeddings"
    version = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=follow_up.pk))
    assert version.metrics["pool_scored"] == 40
    # unlabeled examples are predicted well from 16 labels
    preds = Prediction.objects.filter(project=minilm_project).select_related("example", "label")
    unlabeled = [p for p in preds if p.example.submitted_count == 0]
    assert len(unlabeled) == 24
    correct = sum(p.label.name == toy[p.example.text] for p in unlabeled)
    assert correct / len(unlabeled) >= 0.9
    # the explanation of a prediction names its sentiment word
    example = unlabeled[0].example
    result = pipeline.explain_example(version_id=version.pk, example_id=example.pk)
    top = max(result["tokens"], key=lambda t: t["weight"])["text"]
    assert top in example.text.split()[3]  # "<filler 3 words> <sentiment word> number N"


def test_deep_loop_fine_tunes_the_encoder_and_later_fast_runs_use_it(
    minilm_project, labeler, toy, admin_user, django_capture_on_commit_callbacks
):
    services.config_update(project=minilm_project, hyperparams={"epochs": 1, "max_length": 32, "batch_size": 8})
    label_next(minilm_project, labeler, toy, n=12)
    run = services.training_run_request(project=minilm_project, requested_by=admin_user, loop="deep")
    version = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=run.pk))
    assert version.kind == "minilm-ft" and version.loop == "deep"
    assert version.encoder_key.startswith("minilm-ft@") and version.encoder_key != ENCODER_KEY
    assert version.metrics["history"][0]["train_loss"] > 0
    # the pool was embedded with the fine-tuned encoder, which is now the project's encoder
    assert ExampleEmbedding.objects.filter(project=minilm_project, encoder_key=version.encoder_key).count() == 40
    config = ProjectTrainingConfig.objects.get(project=minilm_project)
    assert config.current_version == version and config.encoder_key == version.encoder_key
    # a fast run afterwards trains a head on the fine-tuned embeddings, parented by the deep version
    fast = services.training_run_request(project=minilm_project, requested_by=admin_user)
    head = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=fast.pk))
    assert head.kind == "minilm" and head.encoder_key == version.encoder_key and head.parent == version
    # and the fine-tuned encoder is loaded back from the store to explain
    example = Prediction.objects.filter(project=minilm_project).first().example
    worker_cache.clear()
    assert pipeline.explain_example(version_id=head.pk, example_id=example.pk)["tokens"]


def test_deep_loop_starts_from_the_head_fitted_on_the_frozen_encoder():
    """Linear probing, then fine-tuning: before any fine-tuning step the deep loop's head already
    separates the training texts (from random weights it would answer at chance)."""
    import torch

    from training.ml.classifiers import HyperParams
    from training.ml.finetune import FineTunedClassifier

    texts = [
        "The team won the championship game last night.",
        "The striker scored twice in the final match.",
        "The coach praised his players after the tournament.",
        "Shares of the bank rose after strong quarterly earnings.",
        "The central bank raised interest rates again.",
        "Investors sold stocks as the market fell sharply.",
    ]
    y = np.array([0, 0, 0, 1, 1, 1])
    model = FineTunedClassifier(["sports", "business"], HyperParams(seed=0, max_length=32))
    model.device = "cpu"
    model.encoder = load_encoder("cpu")
    head = model._probed_head(texts, np.eye(2, dtype=np.float32)[y])
    with torch.no_grad():
        probs = torch.softmax(head(torch.as_tensor(model.featurize(texts))), 1).numpy()
    assert (probs.argmax(1) == y).all()
    assert probs[np.arange(6), y].min() > 0.6
