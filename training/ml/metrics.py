"""Held-out evaluation in plain numpy (no torch): accuracy, macro-F1, per-class precision and
recall, the confusion matrix and expected calibration error."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 10) -> float:
    """ECE over equal-width confidence bins: sum_b |acc(b) - conf(b)| * |b| / n."""
    if len(y_true) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += abs(correct[sel].mean() - conf[sel].mean()) * sel.mean()
    return float(ece)


def classification_report(probs: np.ndarray, y_true: np.ndarray, class_names: Sequence[str]) -> dict:
    """Metrics of predicted probabilities [n, k] against true class indices [n]."""
    k = len(class_names)
    y_true = np.asarray(y_true, dtype=np.int64)
    n = len(y_true)
    if n == 0:
        return {
            "eval_size": 0,
            "accuracy": None,
            "macro_f1": None,
            "ece": None,
            "per_class": {},
            "confusion_matrix": {"labels": list(class_names), "matrix": [[0] * k for _ in range(k)]},
        }
    y_pred = probs.argmax(axis=1)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    per_class, f1s = {}, []
    for i, name in enumerate(class_names):
        tp = cm[i, i]
        predicted, actual = cm[:, i].sum(), cm[i, :].sum()
        precision = float(tp / predicted) if predicted else 0.0
        recall = float(tp / actual) if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(actual)}
        if actual:  # macro-F1 over the classes present in the evaluation set
            f1s.append(f1)
    return {
        "eval_size": int(n),
        "accuracy": float((y_pred == y_true).mean()),
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "ece": expected_calibration_error(probs, y_true),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(class_names), "matrix": cm.tolist()},
    }
