"""Texts in scripts written without spaces (Chinese, Japanese, Thai...): the from-scratch model
and the cold start's hashed features split them into characters, not whole clauses."""

import numpy as np

from training.ml import store
from training.ml.classifiers import Dataset, HashedClassifier, HyperParams, text_tokens

POSITIVE = ["好", "棒", "喜欢"]
NEGATIVE = ["差", "糟糕", "讨厌"]
FILLER = ["这部电影", "今天的晚餐", "那本书", "我们的旅行", "这家餐厅", "他的新歌"]


def chinese_reviews(n: int, seed: int) -> list[tuple[str, str]]:
    """Unique sentences (no spaces) whose sentiment is carried by one word among filler."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        word = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        rows.append((f"{rng.choice(FILLER)}真的很{word}第{i}次", label))
    return rows


def one_hot(labels, classes):
    return np.eye(len(classes), dtype=np.float32)[[classes.index(lab) for lab in labels]]


def test_an_unspaced_clause_splits_into_characters_and_spaced_words_stay_whole():
    assert text_tokens("I liked 这部电影 a lot") == ["i", "liked", "这", "部", "电", "影", "a", "lot"]
    assert len(text_tokens("สวัสดีครับ")) > 4 and all(len(t) == 1 for t in text_tokens("สวัสดีครับ"))
    assert text_tokens("I liked 这部电影", "words") == ["i", "liked", "这部电影"]


def test_the_hashed_model_learns_chinese_sentiment_from_its_characters():
    classes = ["positive", "negative"]
    train, test = chinese_reviews(80, seed=1), chinese_reviews(40, seed=2)
    model = HashedClassifier(classes, HyperParams(seed=0))
    model.fit(Dataset(texts=[t for t, _ in train], targets=one_hot([lab for _, lab in train], classes)))
    predicted = [classes[i] for i in model.predict_texts([t for t, _ in test]).argmax(1)]
    accuracy = np.mean([p == lab for p, (_, lab) in zip(predicted, test, strict=True)])
    assert accuracy >= 0.95, accuracy
    explanation = model.explain("这部电影真的很糟糕")
    top = max(explanation["tokens"], key=lambda t: t["weight"])
    assert top["text"] in "糟糕" and explanation["label"] == "negative"


def test_a_version_stored_before_the_segmenter_keeps_hashing_whole_words(tmp_path):
    classes = ["positive", "negative"]
    model = HashedClassifier(classes, HyperParams(seed=0, epochs=2, buckets=1 << 12, dim=8))
    model.fit(Dataset(texts=["好 电影", "差 电影"], targets=one_hot(classes, classes)))
    tensors, meta = model.state()
    meta["params"].pop("segmenter")  # what a file written before looks like
    store.save_weights(store=tmp_path, relative="old.safetensors", tensors=tensors, metadata=meta)
    loaded = HashedClassifier.from_state(*store.load_weights(store=tmp_path, relative="old.safetensors"))
    assert loaded.params.segmenter == "words"
