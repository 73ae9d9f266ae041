"""Label aggregation: from several annotators' labels of a text to one training target.

Pure numpy over "long" arrays like core.agreement: one rating per (unit, coder, value), codes
0..U-1, 0..C-1, 0..K-1. Both functions return [U, K] target distributions (rows sum to 1;
a unit without ratings gets a zero row).

- majority_vote: vote shares (Tally's behaviour before Dawid-Skene; the argmax with ties to
  the lowest code is the majority label).
- dawid_skene: Dawid & Skene (1979), EM over one K x K confusion matrix per coder and class
  priors. Deterministic: initialised from the vote shares (the majority vote), additive
  smoothing of the counts, fixed iteration cap and tolerance. docs/agreement.md says what it
  assumes (coders independent given the true class; one confusion matrix per coder for
  every text). It stops when the log-likelihood of the labels changes by less than `tol`
  relative (or after `max_iter` iterations; `converged` says which).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAJORITY = "majority"
DAWID_SKENE = "dawid_skene"
METHODS = (MAJORITY, DAWID_SKENE)


def majority_vote(unit, value, n_units: int, n_values: int, weights=None) -> np.ndarray:
    unit = np.asarray(unit, dtype=np.int64)
    value = np.asarray(value, dtype=np.int64)
    w = np.ones(len(unit)) if weights is None else np.asarray(weights, dtype=np.float64)
    votes = np.bincount(unit * n_values + value, weights=w, minlength=n_units * n_values).reshape(n_units, n_values)
    total = votes.sum(1, keepdims=True)
    return np.divide(votes, total, out=np.zeros_like(votes), where=total > 0)


@dataclass(frozen=True)
class DawidSkene:
    posteriors: np.ndarray  # [U, K] P(true class | labels)
    confusion: np.ndarray  # [C, K, K] P(coder says l | true class k)
    priors: np.ndarray  # [K]
    iterations: int
    converged: bool

    def coder_accuracy(self) -> np.ndarray:
        """[C] estimated probability that each coder gives the true class: sum_k p_k pi[k, k]."""
        return np.einsum("k,ckk->c", self.priors, self.confusion)


def _m_step(post, unit, coder, value, n_coders, n_values, smoothing):
    w = post[unit]  # [n, K] the weight of each rating for each true class
    counts = np.empty((n_coders, n_values, n_values))
    key = coder * n_values + value
    for k in range(n_values):
        counts[:, k, :] = np.bincount(key, weights=w[:, k], minlength=n_coders * n_values).reshape(n_coders, n_values)
    counts += smoothing
    confusion = counts / counts.sum(2, keepdims=True)
    priors = post.sum(0) + smoothing
    return confusion, priors / priors.sum()


def _e_step(confusion, priors, unit, coder, value, n_units, n_values, rated):
    """Posteriors of the true class per unit, and the log-likelihood of the rated units' labels."""
    log_conf = np.log(confusion)[coder, :, value]  # [n, K]: log P(this label | true class k)
    log_post = np.empty((n_units, n_values))
    for k in range(n_values):
        log_post[:, k] = np.bincount(unit, weights=log_conf[:, k], minlength=n_units)
    log_post += np.log(priors)
    log_post = log_post[rated]
    top = log_post.max(1, keepdims=True)
    post = np.exp(log_post - top)
    total = post.sum(1, keepdims=True)
    log_likelihood = float((np.log(total) + top).sum())
    full = np.zeros((n_units, n_values))
    full[rated] = post / total
    return full, log_likelihood


def dawid_skene(
    unit,
    coder,
    value,
    n_units: int,
    n_coders: int,
    n_values: int,
    *,
    max_iter: int = 200,
    tol: float = 1e-7,
    smoothing: float = 0.01,
) -> DawidSkene:
    unit = np.asarray(unit, dtype=np.int64)
    coder = np.asarray(coder, dtype=np.int64)
    value = np.asarray(value, dtype=np.int64)
    post = majority_vote(unit, value, n_units, n_values)
    rated = post.sum(1) > 0
    confusion, priors = _m_step(post, unit, coder, value, n_coders, n_values, smoothing)
    iterations, converged, previous = 0, False, None
    while iterations < max_iter:
        post, log_likelihood = _e_step(confusion, priors, unit, coder, value, n_units, n_values, rated)
        iterations += 1
        confusion, priors = _m_step(post, unit, coder, value, n_coders, n_values, smoothing)
        if previous is not None and abs(log_likelihood - previous) <= tol * abs(previous):
            converged = True
            break
        previous = log_likelihood
    return DawidSkene(posteriors=post, confusion=confusion, priors=priors, iterations=iterations, converged=converged)
