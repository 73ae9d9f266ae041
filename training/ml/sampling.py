"""Uncertainty sampling and the queue order it produces (numpy only)."""

from __future__ import annotations

import numpy as np

STRATEGIES = ("margin", "entropy", "random")


def uncertainty(probs: np.ndarray, strategy: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Higher = more worth labeling. margin: 1 - (p1 - p2); entropy: -sum p log p; random."""
    n = len(probs)
    if strategy == "random":
        return (rng or np.random.default_rng(0)).random(n)
    if n == 0:
        return np.zeros(0)
    if strategy == "margin":
        if probs.shape[1] < 2:
            return np.zeros(n)
        top2 = np.partition(probs, -2, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])
    if strategy == "entropy":
        p = np.clip(probs, 1e-12, 1.0)
        return -(p * np.log(p)).sum(axis=1)
    raise ValueError(f"Unknown sampling strategy {strategy!r}; use one of {', '.join(STRATEGIES)}.")


def queue_priorities(
    scores: np.ndarray,
    *,
    qc_share: float,
    rng: np.random.Generator,
    qc_candidates: np.ndarray | None = None,
) -> np.ndarray:
    """Turn uncertainty scores into queue priorities in (0, 1], with QC picks interleaved.

    Positions are filled in order; every 1/qc_share-th position goes to a quality-control pick
    (a random example, or one from `qc_candidates`, e.g. gold items, when given) and the rest to
    the most uncertain examples not yet placed. Priority = 1 - position / n, so the queue's
    `-priority` order walks this list. Returns one priority per score, index-aligned.
    """
    n = len(scores)
    priorities = np.zeros(n, dtype=np.float64)
    if n == 0:
        return priorities
    by_uncertainty = np.argsort(-scores, kind="stable")
    qc_pool = rng.permutation(n)
    if qc_candidates is not None and len(qc_candidates):
        gold = rng.permutation(np.asarray(qc_candidates, dtype=np.int64))
        # alternate gold and random picks in the QC slots
        mixed = np.empty(len(gold) + n, dtype=np.int64)
        m = min(len(gold), n)
        mixed[: 2 * m : 2], mixed[1 : 2 * m : 2] = gold[:m], qc_pool[:m]
        mixed[2 * m :] = np.concatenate([gold[m:], qc_pool[m:]])
        qc_pool = mixed
    every = int(round(1.0 / qc_share)) if qc_share > 0 else 0
    placed = np.zeros(n, dtype=bool)
    u, q, pos = 0, 0, 0
    while pos < n:
        take_qc = every > 0 and pos % every == every - 1
        idx = -1
        if take_qc:
            while q < len(qc_pool) and placed[qc_pool[q]]:
                q += 1
            if q < len(qc_pool):
                idx = qc_pool[q]
        if idx < 0:
            while placed[by_uncertainty[u]]:
                u += 1
            idx = by_uncertainty[u]
        placed[idx] = True
        priorities[idx] = 1.0 - pos / n
        pos += 1
    return priorities
