"""The one training loop, shared by fitting a small model and fine-tuning MiniLM.

As in pytorch/examples `mnist/main.py` and nanoGPT `train.py`: `train_one_epoch()` steps the
optimizers over one epoch's batches, `evaluate()` scores the held-out set with `model.eval()`
and `torch.no_grad()`, and `fit()` runs epochs of both. What differs between the model kinds
(features or tokenised texts, optimizers and schedule, gradient clipping) comes in through a
`Plan` that each classifier builds; the loop itself never branches on the kind.

torch is imported inside functions only (see training/ml/__init__.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class Plan:
    """What one fit trains, and how.

    `batches(generator)` yields one epoch's batches (index arrays, or None for the whole set);
    `batch_loss(batch)` returns the loss of one batch (forward pass included). `predict_eval()`
    returns the held-out predicted class indices (None: no held-out set) to compare with
    `eval_y`."""

    n: int
    epochs: int
    modules: Sequence  # torch modules put in train mode for an epoch, eval mode after
    optimizers: Sequence
    batches: Callable[[object], Iterable]
    batch_loss: Callable[[object], object]
    schedulers: Sequence = ()
    clip: Callable[[], None] | None = None
    predict_eval: Callable[[], object] | None = None
    eval_y: object = None
    eval_modules: Sequence = field(default_factory=list)


def soft_cross_entropy(logits, targets):
    """Cross-entropy against soft targets (vote shares), averaged over the batch."""
    import torch

    return -(targets * torch.log_softmax(logits, dim=1)).sum(1).mean()


def train_one_epoch(plan: Plan, generator) -> float:
    """One pass over the training set; returns the mean training loss per example."""
    for module in plan.modules:
        module.train()
    total = 0.0
    for batch in plan.batches(generator):
        for opt in plan.optimizers:
            opt.zero_grad(set_to_none=True)
        loss = plan.batch_loss(batch)
        loss.backward()
        if plan.clip is not None:
            plan.clip()
        for opt in plan.optimizers:
            opt.step()
        for scheduler in plan.schedulers:
            scheduler.step()
        total += float(loss.detach()) * (plan.n if batch is None else len(batch))
    return total / plan.n


def evaluate(plan: Plan) -> float:
    """Held-out accuracy. Predictions may be a tensor (the mean is taken in torch, float32)
    or a numpy array (numpy's mean), so that histories match the ones recorded before."""
    import torch

    for module in plan.eval_modules:
        module.eval()
    with torch.no_grad():
        pred = plan.predict_eval()
    correct = pred == plan.eval_y
    return float(correct.float().mean() if isinstance(correct, torch.Tensor) else correct.mean())


def fit(plan: Plan, *, seed: int, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Epochs of train_one_epoch() and evaluate(); returns the history, one row per epoch. The
    batch order comes from a generator seeded with `seed` (the caller seeded everything else)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(1, plan.epochs + 1):
        row = {"epoch": epoch, "train_loss": train_one_epoch(plan, generator), "eval_accuracy": None}
        if plan.predict_eval is not None:
            row["eval_accuracy"] = evaluate(plan)
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    for module in plan.modules:
        module.eval()
    return history
