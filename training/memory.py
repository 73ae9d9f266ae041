"""How much memory a model, its gradients and its optimiser state need while training: an
estimate from the hyper-parameters alone, checked against TALLY_TRAINING_MEMORY_BUDGET_MB
when a project's training settings change (services.config_update), so that a model no worker
can hold is a 400 naming the limit, not an out-of-memory kill in the worker.

float32 throughout (4 bytes). Deliberately simple and on the generous side; the numbers are
per model kind (training/ml/classifiers.py, training/ml/finetune.py):

- hashed: an EmbeddingBag of buckets x dim trained with SparseAdam (two dense state tensors
  of the same size; the gradient is sparse), plus a dim x k layer with AdamW.
- minilm: a head (384 -> hidden -> k, or 384 -> k) with AdamW, and one batch of features and
  activations.
- minilm-ft (the deep loop): MiniLM-L6 (22.7 M parameters) with AdamW (weights, gradients, two
  states), and a batch's activations: per layer s*b*h*(34 + 5*a*s/h) values (Korthikanti et al.,
  2022, "Reducing activation recomputation in large transformer models").

No torch here: the web process imports this.
"""

from __future__ import annotations

from .ml.classifiers import HyperParams

FLOAT = 4
ADAM_COPIES = 4  # weights, gradients, exp_avg, exp_avg_sq
MINILM_DIM, MINILM_LAYERS, MINILM_HEADS, MINILM_PARAMS = 384, 6, 12, 22_713_216
HEAD_FULL_BATCH = 100_000  # batch_size 0 trains the head on every label at once: assume this many
KINDS = ("hashed", "minilm", "minilm-ft")


def estimate_bytes(kind: str, params: HyperParams, *, n_classes: int) -> int:
    k = max(n_classes, 2)
    if kind == "hashed":
        embedding = params.buckets * params.dim * FLOAT * 3  # weights + SparseAdam's two states
        batch = (params.batch_size or 32) * params.dim * FLOAT * 4
        return embedding + (params.dim * k + k) * FLOAT * ADAM_COPIES + batch
    if kind == "minilm":
        hidden = params.hidden
        weights = (MINILM_DIM * hidden + hidden * k + hidden + k) if hidden else (MINILM_DIM * k + k)
        batch = (params.batch_size or HEAD_FULL_BATCH) * (MINILM_DIM + 2 * hidden + k) * FLOAT * 2
        return weights * FLOAT * ADAM_COPIES + batch
    if kind == "minilm-ft":
        s, b, h, a = params.max_length, params.batch_size or 16, MINILM_DIM, MINILM_HEADS
        activations = MINILM_LAYERS * s * b * h * (34 + 5 * a * s // h) * FLOAT // 2
        head = (MINILM_DIM * (params.hidden or k) + (params.hidden or 0) * k) * FLOAT * ADAM_COPIES
        return MINILM_PARAMS * FLOAT * ADAM_COPIES + head + activations
    raise ValueError(f"unknown model kind {kind!r}")


def largest(params: HyperParams, *, n_classes: int) -> tuple[str, int]:
    """The model kind these settings make largest, and its estimate. Hyper-parameters are shared
    by the kinds (a project may switch kind, and a deep run may be requested at any time), so
    every kind must fit."""
    return max(((kind, estimate_bytes(kind, params, n_classes=n_classes)) for kind in KINDS), key=lambda x: x[1])


def human(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"
