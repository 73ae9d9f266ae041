"""core.agreement against Krippendorff's published example and against straightforward
reference implementations written here with loops (dicts, no numpy tricks)."""

import itertools
from collections import Counter, defaultdict

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from core import agreement as ag

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 coders x 12
# units, values 1-5, missing marked None. Nominal alpha = 0.743.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def _long(matrix):
    unit, coder, value = [], [], []
    for c, row in enumerate(matrix):
        for u, v in enumerate(row):
            if v is not None:
                unit.append(u)
                coder.append(c)
                value.append(v)
    return np.array(unit), np.array(coder), np.array(value)


def test_nominal_alpha_matches_krippendorffs_published_example():
    unit, _, value = _long(KRIPPENDORFF_2011)
    est = ag.alpha(unit, value - 1, n_boot=0)
    assert round(est.value, 3) == 0.743
    assert est.n_units == 11  # unit 12 has one value: not pairable


# --- reference implementations (loops) -----------------------------------------------------------


def ref_alpha(ratings, delta):
    """ratings: list of (unit, value); delta(c, k) a distance."""
    by_unit = defaultdict(list)
    for u, v in ratings:
        by_unit[u].append(v)
    o = defaultdict(float)
    for values in by_unit.values():
        m = len(values)
        if m < 2:
            continue
        for a, b in itertools.permutations(range(m), 2):
            o[(values[a], values[b])] += 1.0 / (m - 1)
    n_c = defaultdict(float)
    for (c, _), w in o.items():
        n_c[c] += w
    n = sum(n_c.values())
    d_o = sum(w * delta(c, k) for (c, k), w in o.items()) / n
    d_e = sum(n_c[c] * n_c[k] * delta(c, k) for c in n_c for k in n_c) / (n * (n - 1))
    return 1 - d_o / d_e


def nominal(c, k):
    return 0.0 if c == k else 1.0


def masi(a, b):
    a = {j for j in range(64) if a >> j & 1}
    b = {j for j in range(64) if b >> j & 1}
    if a == b:
        return 0.0
    union = a | b
    jaccard = len(a & b) / len(union)
    m = 2 / 3 if (a <= b or b <= a) else (1 / 3 if a & b else 0.0)
    return 1 - jaccard * m


def ref_fleiss(ratings, raters):
    by_unit = defaultdict(list)
    for u, v in ratings:
        by_unit[u].append(v)
    units = [vals for vals in by_unit.values() if len(vals) == raters]
    cats = sorted({v for vals in units for v in vals})
    p_units = []
    totals = Counter()
    for vals in units:
        counts = Counter(vals)
        totals.update(counts)
        p_units.append(sum(c * (c - 1) for c in counts.values()) / (raters * (raters - 1)))
    p_bar = sum(p_units) / len(units)
    p_e = sum((totals[c] / (len(units) * raters)) ** 2 for c in cats)
    return (p_bar - p_e) / (1 - p_e)


def ref_percent(ratings):
    by_unit = defaultdict(list)
    for u, v in ratings:
        by_unit[u].append(v)
    shares = []
    for vals in by_unit.values():
        if len(vals) < 2:
            continue
        pairs = list(itertools.combinations(vals, 2))
        shares.append(sum(a == b for a, b in pairs) / len(pairs))
    return sum(shares) / len(shares)


def generated(seed, n_units=300, n_coders=7, k=4, missing=0.5):
    """Units with a true class, coders of varying skill, each rating a unit with 1 - missing."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_units)
    skill = rng.uniform(0.3, 0.95, n_coders)
    unit, coder, value = [], [], []
    for u in range(n_units):
        for c in range(n_coders):
            if rng.random() < missing:
                continue
            v = truth[u] if rng.random() < skill[c] else rng.integers(0, k)
            unit.append(u)
            coder.append(c)
            value.append(int(v))
    return np.array(unit), np.array(coder), np.array(value)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_alpha_nominal_matches_reference(seed):
    unit, _, value = generated(seed)
    est = ag.alpha(unit, value, n_boot=0)
    assert est.value == pytest.approx(ref_alpha(list(zip(unit, value, strict=True)), nominal), abs=1e-9)


@pytest.mark.parametrize("seed", [4, 5])
def test_alpha_masi_and_per_label_match_reference(seed):
    rng = np.random.default_rng(seed)
    unit = rng.integers(0, 120, 500)
    masks = rng.integers(0, 16, 500)  # sets over 4 labels, empty set included
    est = ag.alpha_masi(unit, masks, n_boot=0)
    assert est.value == pytest.approx(ref_alpha(list(zip(unit, masks, strict=True)), masi), abs=1e-9)
    for j, per_label in enumerate(ag.alpha_per_label(unit, masks, 4, n_boot=0)):
        expected = ref_alpha([(u, int(m >> j & 1)) for u, m in zip(unit, masks, strict=True)], nominal)
        assert per_label.value == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", [6, 7])
def test_fleiss_and_percent_agreement_match_reference(seed):
    unit, _, value = generated(seed, missing=0.0, n_coders=3)
    ratings = list(zip(unit, value, strict=True))
    assert ag.fleiss_kappa(unit, value, n_boot=0).value == pytest.approx(ref_fleiss(ratings, 3), abs=1e-9)
    assert ag.percent_agreement(unit, value, n_boot=0).value == pytest.approx(ref_percent(ratings), abs=1e-9)


def test_fleiss_with_varying_raters_uses_the_modal_count_and_says_so():
    unit, _, value = generated(8, missing=0.5)
    est = ag.fleiss_kappa(unit, value, n_boot=0)
    sizes = Counter(Counter(unit.tolist()).values())
    modal = max((s for s in sizes if s >= 2), key=lambda s: sizes[s])
    assert est.value == pytest.approx(ref_fleiss(list(zip(unit, value, strict=True)), modal), abs=1e-9)
    assert "left out" in est.note


def test_cohen_per_pair_matches_sklearn():
    unit, coder, value = generated(9)
    by = defaultdict(dict)
    for u, c, v in zip(unit, coder, value, strict=True):
        by[c][u] = v
    pairs = ag.cohen_pairs(unit, coder, value, n_boot=0)
    assert len(pairs) == 21
    for p in pairs:
        common = sorted(set(by[p.coder_a]) & set(by[p.coder_b]))
        expected = cohen_kappa_score([by[p.coder_a][u] for u in common], [by[p.coder_b][u] for u in common])
        assert p.estimate.value == pytest.approx(expected, abs=1e-9)
        assert p.estimate.n_units == len(common)


def test_coder_vs_others_and_vs_reference_match_reference():
    unit, coder, value = generated(10)
    by_unit = defaultdict(list)
    for u, c, v in zip(unit, coder, value, strict=True):
        by_unit[u].append((c, v))
    figures = {f.coder: f for f in ag.coder_vs_others(unit, coder, value, n_boot=0)}
    for c in range(7):
        own, other = [], []
        for ratings in by_unit.values():
            for c1, v1 in ratings:
                if c1 != c:
                    continue
                for c2, v2 in ratings:
                    if c2 != c:
                        own.append(v1)
                        other.append(v2)
        assert figures[c].kappa.value == pytest.approx(cohen_kappa_score(own, other), abs=1e-9)
        assert figures[c].agreement.value == pytest.approx(np.mean(np.array(own) == np.array(other)), abs=1e-9)
    rng = np.random.default_rng(0)
    reference = np.where(rng.random(len(unit)) < 0.3, rng.integers(0, 4, len(unit)), -1)
    for f in ag.coder_vs_reference(coder, value, reference, n_boot=0):
        mine = (coder == f.coder) & (reference >= 0)
        assert f.accuracy.value == pytest.approx(np.mean(value[mine] == reference[mine]), abs=1e-9)
        assert f.kappa.value == pytest.approx(cohen_kappa_score(reference[mine], value[mine]), abs=1e-9)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    unit, _, value = generated(11)
    a = ag.alpha(unit, value, n_boot=200, seed=3)
    b = ag.alpha(unit, value, n_boot=200, seed=3)
    assert a == b
    assert a.low < a.value < a.high


def test_no_overlap_is_said_plainly():
    est = ag.alpha([0, 1, 2], [0, 1, 0], n_boot=50)
    assert est.value is None and "no overlap" in est.note
    assert ag.percent_agreement([0, 1], [0, 1]).value is None
    assert ag.fleiss_kappa([0, 1], [1, 1]).value is None
    assert ag.cohen_pairs([0, 1], [0, 1], [0, 1]) == []


def test_alpha_without_the_dense_table_walks_pairs_and_agrees(monkeypatch):
    unit, _, value = generated(12)
    masks = (value * 5 + 3) % 16
    dense = (ag.alpha(unit, value, n_boot=30, seed=1), ag.alpha_masi(unit, masks, n_boot=0))
    monkeypatch.setattr(ag, "DENSE_LIMIT", 0)
    sparse = (ag.alpha(unit, value, n_boot=30, seed=1), ag.alpha_masi(unit, masks, n_boot=0))
    for a, b in zip(dense, sparse, strict=True):
        assert b.value == pytest.approx(a.value, abs=1e-12) and b.n_pairs == a.n_pairs
    assert sparse[0].low == pytest.approx(dense[0].low, abs=1e-12)
