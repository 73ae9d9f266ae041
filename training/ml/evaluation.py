"""What a version's held-out figures honestly say: the headline (macro-F1), the baseline of
always answering the majority class, intervals that widen on small evaluation sets, and
plain warnings. Plain numpy over the stored confusion matrix, so it applies to every version,
old ones too; no torch.

- Accuracy's interval is Wilson's score interval (95%), which stays inside [0, 1] and is
  honest for small n and for accuracies near 0 or 1.
- Macro-F1's interval is a percentile bootstrap over the evaluation texts, resampled from the
  confusion matrix's cells (a fixed seed: the same version always shows the same interval).
- The baseline is the best constant answer on this evaluation set: always the class the set
  holds most of. A model whose accuracy does not beat it has learned nothing visible here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

Z_95 = 1.959963984540054
BOOTSTRAP_SAMPLES = 1000
MIN_TRAIN_PER_LABEL = 5
MIN_EVAL_SIZE = 30


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def macro_f1(cm: np.ndarray) -> float:
    """Macro-F1 over the classes present in the evaluation set (rows with support)."""
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = actual > 0
    return float(f1[present].mean()) if present.any() else 0.0


def bootstrap_macro_f1(cm: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float] | None:
    n = int(cm.sum())
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    k = cm.shape[0]
    draws = rng.multinomial(n, (cm / n).ravel(), size=samples).reshape(samples, k, k)
    scores = np.array([macro_f1(d) for d in draws])
    return (float(np.percentile(scores, 2.5)), float(np.percentile(scores, 97.5)))


def evaluation_summary(metrics: Mapping, train_counts: Mapping[str, int]) -> dict:
    """The honest reading of a version's stored metrics.

    `train_counts`: texts per label in the version's training set (label name -> count).
    Returns the headline, the majority-class baseline, intervals, per-class recall, the class
    counts and a list of warnings in plain words, with `no_better_than_baseline` for pages
    and clients that must say so.
    """
    confusion = metrics.get("confusion_matrix") or {}
    labels: Sequence[str] = confusion.get("labels") or list(train_counts)
    cm = np.asarray(confusion.get("matrix") or [[0] * len(labels) for _ in labels], dtype=np.int64)
    n = int(cm.sum())
    support = cm.sum(axis=1) if n else np.zeros(len(labels), dtype=np.int64)
    correct = int(np.trace(cm)) if n else 0
    accuracy = correct / n if n else None
    majority = int(support.argmax()) if n else None
    baseline_accuracy = float(support[majority] / n) if n else None
    warnings = []
    for name in labels:
        count = int(train_counts.get(name, 0))
        if count < MIN_TRAIN_PER_LABEL:
            warnings.append(
                f"The label {name!r} has {count} training text{'s' if count != 1 else ''}; "
                f"fewer than {MIN_TRAIN_PER_LABEL} cannot teach the model that label."
            )
    if n == 0:
        warnings.append("There is no evaluation set yet: nothing measures this model.")
    else:
        if n < MIN_EVAL_SIZE:
            warnings.append(
                f"The evaluation set has {n} text{'s' if n != 1 else ''} (fewer than {MIN_EVAL_SIZE}): "
                "its figures can move a lot with a few more labels; read the intervals."
            )
        missing = [name for name, s in zip(labels, support, strict=True) if s == 0]
        if missing:
            warnings.append(
                "The evaluation set has no text of " + ", ".join(repr(m) for m in missing) + ": "
                "how the model does on those labels is not measured."
            )
    no_better = accuracy is not None and accuracy <= baseline_accuracy
    if no_better:
        warnings.append(
            f"No better than guessing: accuracy {accuracy:.3f} does not beat always answering "
            f"{labels[majority]!r} ({baseline_accuracy:.3f} on this evaluation set)."
        )
    recall = {name: (float(cm[i, i] / support[i]) if support[i] else None) for i, name in enumerate(labels)}
    return {
        "headline": "macro_f1",
        "eval_size": n,
        "macro_f1": macro_f1(cm) if n else None,
        "macro_f1_interval": bootstrap_macro_f1(cm),
        "accuracy": accuracy,
        "accuracy_interval": wilson_interval(correct, n),
        "baseline": {
            "name": "majority class",
            "label": labels[majority] if majority is not None else None,
            "accuracy": baseline_accuracy,
        },
        "no_better_than_baseline": bool(no_better),
        "per_class_recall": recall,
        "eval_class_counts": {name: int(s) for name, s in zip(labels, support, strict=True)},
        "train_class_counts": {name: int(train_counts.get(name, 0)) for name in labels},
        "warnings": warnings,
    }
