"""The torch code on tiny data (no database)."""

import hashlib

import numpy as np
import pytest

from tests.support.annotators import toy_texts
from training.ml import store
from training.ml.classifiers import Dataset, HashedClassifier, HeadClassifier, HyperParams
from training.ml.encoder import EncoderUnavailable, read_verified_weights
from training.ml.metrics import classification_report, expected_calibration_error
from training.ml.sampling import queue_priorities, uncertainty


def one_hot(labels, classes):
    return np.eye(len(classes), dtype=np.float32)[[classes.index(lab) for lab in labels]]


def test_hashed_model_learns_a_separable_toy_set():
    # given: sentiment-word texts, disjoint train and test sets
    data = list(toy_texts(60).items())
    train, test = data[:40], data[40:]
    classes = ["positive", "negative"]
    model = HashedClassifier(classes, HyperParams(seed=1))
    # when
    result = model.fit(Dataset(texts=[t for t, _ in train], targets=one_hot([lab for _, lab in train], classes)))
    probs = model.predict_texts([t for t, _ in test])
    # then: every unseen text is classified by its sentiment word, and the loss went down
    assert [classes[i] for i in probs.argmax(1)] == [lab for _, lab in test]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] / 10


def test_hashed_model_is_deterministic_under_a_fixed_seed():
    data = list(toy_texts(20).items())
    classes = ["positive", "negative"]
    runs = []
    for _ in range(2):
        model = HashedClassifier(classes, HyperParams(seed=7, epochs=3))
        model.fit(Dataset(texts=[t for t, _ in data], targets=one_hot([lab for _, lab in data], classes)))
        runs.append(model.predict_texts(["the film was great", "the film was awful"]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_head_learns_separable_embeddings_and_reports_eval_accuracy_per_epoch():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 384)).astype(np.float32)
    y = np.repeat(np.arange(3), 30)
    x = centers[y] + 0.3 * rng.normal(size=(90, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    classes = ["a", "b", "c"]
    model = HeadClassifier(classes, HyperParams(epochs=40))
    targets = np.eye(3, dtype=np.float32)[y]
    result = model.fit(Dataset(features=x[::2], targets=targets[::2]), Dataset(features=x[1::2], targets=targets[1::2]))
    assert len(result.history) == 40
    assert result.history[-1]["eval_accuracy"] == 1.0
    assert (model.predict_proba(x[1::2]).argmax(1) == y[1::2]).all()


def test_weights_round_trip_through_the_store(tmp_path):
    data = list(toy_texts(20).items())
    classes = ["positive", "negative"]
    model = HashedClassifier(classes, HyperParams(epochs=3, buckets=1 << 12, dim=8))
    model.fit(Dataset(texts=[t for t, _ in data], targets=one_hot([lab for _, lab in data], classes)))
    tensors, meta = model.state()
    sha = store.save_weights(store=tmp_path, relative="p1/run-1.safetensors", tensors=tensors, metadata=meta)
    assert sha == hashlib.sha256((tmp_path / "p1/run-1.safetensors").read_bytes()).hexdigest()

    loaded_tensors, loaded_meta = store.load_weights(
        store=tmp_path, relative="p1/run-1.safetensors", expected_sha256=sha
    )
    again = HashedClassifier.from_state(loaded_tensors, loaded_meta)
    texts = ["this book is superb", "our dinner was dismal"]
    np.testing.assert_allclose(again.predict_texts(texts), model.predict_texts(texts), rtol=1e-6)
    assert again.classes == classes and again.params.buckets == 1 << 12


def test_store_refuses_paths_outside_it_and_changed_files(tmp_path):
    with pytest.raises(store.StoreError, match="outside the model store"):
        store.store_path(tmp_path, "../elsewhere.safetensors")
    with pytest.raises(store.StoreError, match="safetensors"):
        store.store_path(tmp_path, "weights.pt")
    import torch

    sha = store.save_weights(store=tmp_path, relative="w.safetensors", tensors={"w": torch.ones(2)}, metadata={})
    (tmp_path / "w.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes() + b" ")
    with pytest.raises(store.StoreError, match="sha256"):
        store.load_weights(store=tmp_path, relative="w.safetensors", expected_sha256=sha)


def test_encoder_refuses_weights_whose_sha256_differs(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not the published MiniLM weights")
    with pytest.raises(EncoderUnavailable, match="Refusing to load"):
        read_verified_weights(tmp_path)


def test_encoder_accepts_the_installed_package_weights():
    from training.ml.encoder import EXPECTED_SHA256, package_model_dir

    data = read_verified_weights(package_model_dir())
    assert hashlib.sha256(data).hexdigest() == EXPECTED_SHA256


def test_hashed_explanation_credits_the_sentiment_word():
    data = list(toy_texts(40).items())
    classes = ["positive", "negative"]
    model = HashedClassifier(classes, HyperParams(seed=0))
    model.fit(Dataset(texts=[t for t, _ in data], targets=one_hot([lab for _, lab in data], classes)))
    text = "our dinner was terrible tonight"
    result = model.explain(text)
    assert result["label"] == "negative" and result["method"] == "occlusion"
    top = max(result["tokens"], key=lambda t: t["weight"])
    assert top["text"] == "terrible"
    assert text[top["start"] : top["end"]] == "terrible"


def test_metrics_on_a_known_confusion():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    y = np.array([0, 0, 1, 1])
    report = classification_report(probs, y, ["a", "b"])
    assert report["accuracy"] == 0.75
    assert report["confusion_matrix"]["matrix"] == [[2, 0], [1, 1]]
    assert report["per_class"]["a"] == {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    assert report["per_class"]["b"]["precision"] == 1.0 and report["per_class"]["b"]["recall"] == 0.5
    assert report["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    # bins: 0.9 (right), 0.8 (right), 0.7 (right), 0.6 (wrong) -> |1-.9|/4+|1-.8|/4+|1-.7|/4+|0-.6|/4
    assert report["ece"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.6) / 4)


def test_ece_is_zero_when_confidence_matches_accuracy():
    probs = np.array([[1.0, 0.0]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 0])) == 0.0


def test_margin_and_entropy_rank_the_uncertain_first():
    probs = np.array([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25], [0.6, 0.3, 0.1]])
    assert list(np.argsort(-uncertainty(probs, "margin"))) == [1, 2, 0]
    assert list(np.argsort(-uncertainty(probs, "entropy"))) == [1, 2, 0]
    with pytest.raises(ValueError, match="Unknown sampling"):
        uncertainty(probs, "bogus")


def test_queue_priorities_interleave_quality_control_picks():
    n = 1000
    scores = np.linspace(1.0, 0.0, n)  # example i is the i-th most uncertain
    prio = queue_priorities(scores, qc_share=0.1, rng=np.random.default_rng(0))
    order = np.argsort(-prio)
    assert len(set(prio)) == n  # a strict order
    top = order[:100]
    # 90 of the first 100 positions follow uncertainty, 10 are QC picks from anywhere
    assert len(set(top) & set(range(90))) == 90
    assert sum(i >= 90 for i in top) == 10
    assert list(order[:9]) == list(range(9))


def test_queue_priorities_prefer_gold_candidates_in_qc_slots():
    scores = np.linspace(1.0, 0.0, 100)
    gold = np.array([95, 96, 97])
    prio = queue_priorities(scores, qc_share=0.1, rng=np.random.default_rng(0), qc_candidates=gold)
    order = list(np.argsort(-prio))
    qc_positions = [order[i] for i in (9, 29, 49)]  # every other QC slot goes to gold first
    assert set(qc_positions) == set(gold.tolist())


def test_classifiers_fill_their_defaults_on_a_copy_of_frozen_hyper_parameters():
    import dataclasses

    from training.ml.finetune import FineTunedClassifier

    params = HyperParams(seed=3)
    hashed = HashedClassifier(["a", "b"], params)
    head = HeadClassifier(["a", "b"], params)
    deep = FineTunedClassifier(["a", "b"], params)
    assert params == HyperParams(seed=3)  # the caller's object is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.epochs = 5
    assert (hashed.params.learning_rate, hashed.params.batch_size) == (0.05, 32)
    assert (head.params.learning_rate, head.params.l2, head.params.batch_size) == (0.1, 25.0, 0)
    assert (deep.params.epochs, deep.params.batch_size, deep.params.learning_rate, deep.params.l2) == (
        4,
        16,
        2e-3,
        25.0,
    )
