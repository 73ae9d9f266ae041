"""core.aggregation.dawid_skene against a reference EM written here with loops, and on data
with a known good annotator and a spammer."""

import math

import numpy as np
import pytest

from core import aggregation


def ref_dawid_skene(ratings, n_units, n_coders, k, iterations, smoothing):
    """ratings: list of (unit, coder, value). Same init (vote shares), smoothing and steps."""
    post = [[0.0] * k for _ in range(n_units)]
    for u, _, v in ratings:
        post[u][v] += 1
    for u in range(n_units):
        s = sum(post[u])
        post[u] = [x / s for x in post[u]] if s else [0.0] * k

    def m_step(post):
        counts = [[[smoothing] * k for _ in range(k)] for _ in range(n_coders)]
        for u, c, v in ratings:
            for t in range(k):
                counts[c][t][v] += post[u][t]
        conf = [[[x / sum(row) for x in row] for row in coder] for coder in counts]
        pri = [sum(post[u][t] for u in range(n_units)) + smoothing for t in range(k)]
        return conf, [p / sum(pri) for p in pri]

    conf, pri = m_step(post)
    rated = {u for u, _, _ in ratings}
    for _ in range(iterations):
        logp = [[math.log(pri[t]) for t in range(k)] for _ in range(n_units)]
        for u, c, v in ratings:
            for t in range(k):
                logp[u][t] += math.log(conf[c][t][v])
        new = []
        for u in range(n_units):
            if u not in rated:
                new.append([0.0] * k)
                continue
            top = max(logp[u])
            e = [math.exp(x - top) for x in logp[u]]
            new.append([x / sum(e) for x in e])
        post = new
        conf, pri = m_step(post)
    return post, conf, pri


def crowd(seed, n_units=200, k=3, skills=(0.9, 0.8, 0.7, 0.6), spammers=1, per_unit=3):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_units)
    n_coders = len(skills) + spammers
    unit, coder, value = [], [], []
    for u in range(n_units):
        for c in rng.choice(n_coders, per_unit, replace=False):
            if c < len(skills):
                v = truth[u] if rng.random() < skills[c] else rng.choice([x for x in range(k) if x != truth[u]])
            else:
                v = rng.integers(0, k)  # a spammer: uniform whatever the text
            unit.append(u)
            coder.append(int(c))
            value.append(int(v))
    return np.array(unit), np.array(coder), np.array(value), truth, n_coders


@pytest.mark.parametrize("seed", [1, 2])
def test_dawid_skene_matches_reference_loops(seed):
    unit, coder, value, _, n_coders = crowd(seed, n_units=80)
    n_units = 82  # two units without ratings get zero rows
    ds = aggregation.dawid_skene(unit, coder, value, n_units, n_coders, 3, max_iter=15, tol=0.0, smoothing=0.01)
    post, conf, pri = ref_dawid_skene(list(zip(unit, coder, value, strict=True)), n_units, n_coders, 3, 15, 0.01)
    assert ds.iterations == 15
    np.testing.assert_allclose(ds.posteriors, np.array(post), atol=1e-9, rtol=0)
    np.testing.assert_allclose(ds.confusion, np.array(conf), atol=1e-9, rtol=0)
    np.testing.assert_allclose(ds.priors, np.array(pri), atol=1e-9, rtol=0)


def test_dawid_skene_tells_a_good_annotator_from_a_spammer():
    unit, coder, value, truth, n_coders = crowd(3, n_units=600)
    ds = aggregation.dawid_skene(unit, coder, value, 600, n_coders, 3)
    accuracy = ds.coder_accuracy()
    assert ds.converged
    assert accuracy[0] > 0.85  # the 0.9 annotator
    assert accuracy[4] < 0.45  # the spammer: about 1/3
    assert accuracy[0] > accuracy[1] > accuracy[2] > accuracy[3] > accuracy[4]
    # And its targets are at least as right as the majority vote's.
    mv = aggregation.majority_vote(unit, value, 600, 3).argmax(1)
    assert (ds.posteriors.argmax(1) == truth).mean() >= (mv == truth).mean()


def test_majority_vote_is_vote_shares():
    shares = aggregation.majority_vote([0, 0, 0, 1], [1, 1, 0, 2], 3, 3)
    np.testing.assert_allclose(shares, [[1 / 3, 2 / 3, 0], [0, 0, 1], [0, 0, 0]])
