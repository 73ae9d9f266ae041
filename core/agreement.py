"""Inter-annotator agreement: pure, vectorised numpy over "long" rating arrays.

A rating is one (unit, coder, value): `unit` and `coder` are integer codes (0..U-1, 0..C-1),
`value` an integer category code (0..K-1; a negative value is a missing rating and is
dropped). Units with fewer than two ratings are not pairable and count nowhere. Multi-label
ratings are sets, given as integer bitmasks (bit j set = label j chosen).

Every measure returns an `Estimate`: the value, a percentile bootstrap interval over units
(seeded; resampling units with replacement), and n (units and pairs that entered it). When
there is nothing to measure (no unit with two ratings, one category only...), the value is
None and `note` says why. docs/agreement.md explains each measure and when to trust it.

Conventions (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"):
- alpha = 1 - D_o / D_e from the coincidence matrix: each unit with m_u >= 2 values adds
  1/(m_u - 1) to o[c, k] for every ordered pair of its values (different raters);
- percent agreement: the mean over pairable units of the share of agreeing rater pairs;
- Cohen's kappa per pair of coders over the units both rated (sklearn's convention);
- Fleiss' kappa over the units rated by the most common number of raters (it assumes a
  constant number; the others are left out and counted in the note).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_BOOT = 500
CONFIDENCE = 0.95
# Above this many (unit, value) cells, alpha walks pairs of ratings instead of a dense table.
DENSE_LIMIT = 20_000_000


@dataclass(frozen=True)
class Estimate:
    value: float | None
    low: float | None = None
    high: float | None = None
    n_units: int = 0
    n_pairs: int = 0
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _none(note: str, n_units: int = 0, n_pairs: int = 0) -> Estimate:
    return Estimate(value=None, n_units=n_units, n_pairs=n_pairs, note=note)


# --- the shared machinery: pairs within units, and the bootstrap --------------------------------


def _clean(unit, value, coder=None):
    unit = np.asarray(unit, dtype=np.int64)
    value = np.asarray(value, dtype=np.int64)
    keep = value >= 0
    if coder is None:
        return unit[keep], value[keep], None
    return unit[keep], value[keep], np.asarray(coder, dtype=np.int64)[keep]


def pairs_within_units(unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i != j, of ratings sharing a unit, each unordered pair once."""
    unit = np.asarray(unit, dtype=np.int64)
    order = np.argsort(unit, kind="stable")
    sorted_units = unit[order]
    left, right = [], []
    d = 1
    while d < len(order):
        same = sorted_units[:-d] == sorted_units[d:]
        if not same.any():
            break
        left.append(order[:-d][same])
        right.append(order[d:][same])
        d += 1
    if not left:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(left), np.concatenate(right)


def unique_inverse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(x, return_inverse=True) by one sort (numpy 2's hashing unique is several times
    slower on a million integers)."""
    x = np.asarray(x)
    if not len(x):
        return x.copy(), np.zeros(0, dtype=np.int64)
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    starts = np.empty(len(x), dtype=bool)
    starts[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    inverse = np.empty(len(x), dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return ordered[starts], inverse


def _compact(unit: np.ndarray) -> tuple[np.ndarray, int]:
    """Unit codes renumbered 0..U-1 (units seen only), in the order of their codes. Codes
    in a range not much wider than their number (ids of one project's texts) go by a
    lookup table, others by a sort."""
    if len(unit) and unit.min() >= 0 and unit.max() < 4 * len(unit) + 1024:
        present = np.bincount(unit) > 0
        remap = np.cumsum(present) - 1
        return remap[unit], int(present.sum())
    uniq, inverse = unique_inverse(unit)
    return inverse, len(uniq)


def _bootstrap(
    stat: Callable[[np.ndarray], float | None], n_units: int, n_boot: int, seed: int
) -> tuple[float | None, float | None]:
    """Percentile interval of `stat(weights)` over resamplings of the units (weights: how often
    each unit was drawn). Replicates where the statistic is undefined are left out."""
    if n_boot <= 0 or n_units < 2:
        return None, None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units).astype(np.float64)
        v = stat(w)
        if v is not None and np.isfinite(v):
            values.append(v)
    if len(values) < max(10, n_boot // 2):
        return None, None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


# --- Krippendorff's alpha ------------------------------------------------------------------------


def nominal_distance(n_values: int) -> np.ndarray:
    return 1.0 - np.eye(n_values)


def masi_distance(masks: np.ndarray) -> np.ndarray:
    """MASI distance (Passonneau 2006) between label sets given as bitmasks: 1 - J * M, J the
    Jaccard index, M = 1 for equal sets, 2/3 when one contains the other, 1/3 when they only
    overlap, 0 when disjoint. Two empty sets are equal (distance 0)."""
    masks = np.asarray(masks, dtype=np.uint64)
    a, b = masks[:, None], masks[None, :]
    inter = _popcount(a & b)
    union = _popcount(a | b)
    size_a, size_b = _popcount(a), _popcount(b)
    jaccard = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    monotone = np.where(
        a == b,
        1.0,
        np.where((inter == size_a) | (inter == size_b), 2 / 3, np.where(inter > 0, 1 / 3, 0.0)),
    )
    return 1.0 - jaccard * monotone


def _popcount(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint64)
    return np.bitwise_count(x).astype(np.float64)


def alpha(
    unit,
    value,
    *,
    distance: np.ndarray | None = None,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
) -> Estimate:
    """Krippendorff's alpha for values coded 0..V-1, nominal unless `distance` ([V, V], zero
    diagonal, symmetric) says otherwise. Any number of coders per unit; missing values dropped."""
    unit, value, _ = _clean(unit, value)
    if len(unit) == 0:
        return _none("no ratings")
    unit, n_units_all = _compact(unit)
    n_values = int(value.max()) + 1
    delta = nominal_distance(n_values) if distance is None else np.asarray(distance, dtype=np.float64)
    m = np.bincount(unit, minlength=n_units_all).astype(np.float64)
    pairable = m[unit] >= 2
    unit, value = unit[pairable], value[pairable]
    n_units = int((m >= 2).sum())
    if n_units == 0:
        return _none("no unit has two ratings: there is no overlap to measure")
    # Per pairable unit: its values' counts (dense when small), m_u and observed disagreement;
    # a resampling's sums are then weighted sums over units.
    pairable_units = np.flatnonzero(m >= 2)
    position = np.full(n_units_all, -1, dtype=np.int64)
    position[pairable_units] = np.arange(n_units)
    row = position[unit]
    m_p = m[pairable_units]
    dense = n_units * n_values <= DENSE_LIMIT
    counts = None
    if dense:
        counts = (
            np.bincount(row * n_values + value, minlength=n_units * n_values).reshape(n_units, n_values).astype(float)
        )
        # Observed disagreement per unit: sum over ordered pairs of its values of delta / (m_u - 1)
        # = sum_c,k n_uc n_uk delta_ck / (m_u - 1) (delta's diagonal is 0, so no pair with itself).
        if distance is None:
            d_p = (m_p**2 - (counts**2).sum(1)) / (m_p - 1)
        else:
            d_p = ((counts @ delta) * counts).sum(1) / (m_p - 1)
        n_pairs = int((m_p * (m_p - 1) / 2).sum())
    else:
        i, j = pairs_within_units(row)
        d_p = np.bincount(row[i], weights=2 * delta[value[i], value[j]], minlength=n_units) / (m_p - 1)
        n_pairs = len(i)

    # One matrix of per-unit sums [m_u, d_u, counts...]: one product per resampling.
    sums = np.column_stack([m_p, d_p] + ([counts] if dense else []))

    def compute(w: np.ndarray) -> float | None:
        total = w @ sums
        n, observed = total[0], total[1]
        n_c = total[2:] if dense else np.bincount(value, weights=w[row], minlength=n_values)
        expected = n_c @ delta @ n_c / (n * (n - 1)) if n > 1 else 0.0
        if expected <= 0:
            return None
        return float(1.0 - observed / n / expected)

    point = compute(np.ones(n_units))
    if point is None:
        return _none("every value is the same category: alpha is undefined", n_units, n_pairs)
    low, high = _bootstrap(compute, n_units, n_boot, seed)
    return Estimate(point, low, high, n_units=n_units, n_pairs=n_pairs)


def alpha_masi(unit, masks, *, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> Estimate:
    """Alpha over label sets (bitmasks, >= 0) with the MASI distance."""
    masks = np.asarray(masks, dtype=np.int64)
    distinct, codes = unique_inverse(masks)
    return alpha(unit, codes, distance=masi_distance(distinct), n_boot=n_boot, seed=seed)


def alpha_per_label(unit, masks, n_labels: int, *, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> list[Estimate]:
    """For multi-label ratings: nominal alpha of each label as a binary (chosen or not) value."""
    masks = np.asarray(masks, dtype=np.int64)
    return [alpha(unit, (masks >> j) & 1, n_boot=n_boot, seed=seed) for j in range(n_labels)]


# --- raw agreement and Fleiss' kappa --------------------------------------------------------------


def _unit_counts(unit, value) -> tuple[np.ndarray, np.ndarray]:
    """[U, K] counts of each value per unit (units compacted) and m_u."""
    unit, n_units = _compact(unit)
    n_values = int(value.max()) + 1
    counts = np.bincount(unit * n_values + value, minlength=n_units * n_values).reshape(n_units, n_values)
    return counts.astype(np.float64), counts.sum(1).astype(np.float64)


def percent_agreement(unit, value, *, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> Estimate:
    """The mean over units with two ratings or more of the share of rater pairs that agree."""
    unit, value, _ = _clean(unit, value)
    if len(unit) == 0:
        return _none("no ratings")
    counts, m = _unit_counts(unit, value)
    keep = m >= 2
    counts, m = counts[keep], m[keep]
    if not len(m):
        return _none("no unit has two ratings: there is no overlap to measure")
    share = ((counts * (counts - 1)).sum(1)) / (m * (m - 1))
    n_pairs = int((m * (m - 1) / 2).sum())

    def compute(w):
        return float((w * share).sum() / w.sum())

    low, high = _bootstrap(compute, len(m), n_boot, seed)
    return Estimate(float(share.mean()), low, high, n_units=len(m), n_pairs=n_pairs)


def fleiss_kappa(unit, value, *, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> Estimate:
    """Fleiss' kappa over the units rated by the most common number (>= 2) of raters."""
    unit, value, _ = _clean(unit, value)
    if len(unit) == 0:
        return _none("no ratings")
    counts, m = _unit_counts(unit, value)
    pairable = m >= 2
    if not pairable.any():
        return _none("no unit has two ratings: there is no overlap to measure")
    sizes, freq = np.unique(m[pairable], return_counts=True)
    raters = sizes[np.argmax(freq)]
    keep = m == raters
    left_out = int(pairable.sum() - keep.sum())
    counts = counts[keep]
    note = (
        f"over the {int(keep.sum())} units with {int(raters)} raters; {left_out} units with another number of "
        "raters left out (Fleiss' kappa assumes a constant number)"
        if left_out
        else ""
    )
    p_unit = (counts * (counts - 1)).sum(1) / (raters * (raters - 1))

    def compute(w):
        total = w.sum()
        p_bar = (w * p_unit).sum() / total
        p_j = (w @ counts) / (total * raters)
        p_e = (p_j**2).sum()
        return None if p_e >= 1 else float((p_bar - p_e) / (1 - p_e))

    point = compute(np.ones(len(counts)))
    n_pairs = int(len(counts) * raters * (raters - 1) / 2)
    if point is None:
        return _none("every rating is the same category: kappa is undefined", len(counts), n_pairs)
    low, high = _bootstrap(compute, len(counts), n_boot, seed)
    return Estimate(point, low, high, n_units=len(counts), n_pairs=n_pairs, note=note)


# --- Cohen's kappa per pair of coders -------------------------------------------------------------


def _kappa_from_tables(tables: np.ndarray) -> np.ndarray:
    """Cohen's kappa of each [K, K] confusion table ([P, K, K]); NaN where undefined."""
    n = tables.sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_o = np.trace(tables, axis1=1, axis2=2) / n
        p_e = (tables.sum(2) * tables.sum(1)).sum(1) / n**2
        kappa = (p_o - p_e) / (1 - p_e)
    return np.where((n > 0) & (p_e < 1), kappa, np.nan)


@dataclass(frozen=True)
class PairKappa:
    coder_a: int
    coder_b: int
    estimate: Estimate
    agreement: float


def cohen_pairs(
    unit, coder, value, *, n_boot: int = DEFAULT_BOOT, seed: int = 0, min_units: int = 1
) -> list[PairKappa]:
    """Cohen's kappa for every pair of coders (a < b) with at least `min_units` units in common
    (a coder's several ratings of one unit all count). Intervals resample units."""
    unit, value, coder = _clean(unit, value, coder)
    if len(unit) == 0:
        return []
    unit, n_units = _compact(unit)
    n_values = int(value.max()) + 1
    i, j = pairs_within_units(unit)
    same = coder[i] == coder[j]
    i, j = i[~same], j[~same]
    swap = coder[i] > coder[j]
    i, j = np.where(swap, j, i), np.where(swap, i, j)
    if not len(i):
        return []
    pair_key = coder[i] * (int(coder.max()) + 1) + coder[j]
    pairs, pair_id = unique_inverse(pair_key)
    n_p = len(pairs)
    cell = (pair_id * n_values + value[i]) * n_values + value[j]
    size = n_p * n_values * n_values
    pair_unit = unit[i]

    def tables(w_unit):
        return np.bincount(cell, weights=w_unit[pair_unit], minlength=size).reshape(n_p, n_values, n_values)

    base = tables(np.ones(n_units))
    kappas = _kappa_from_tables(base)
    units_per_pair = np.bincount(pair_id, minlength=n_p)  # pairs of ratings; one per unit normally
    boots = []
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        for _ in range(n_boot):
            w = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units).astype(np.float64)
            boots.append(_kappa_from_tables(tables(w)))
    boots = np.array(boots) if boots else np.zeros((0, n_p))
    tail = (1 - CONFIDENCE) / 2 * 100
    ncoder = int(coder.max()) + 1
    result = []
    for p in range(n_p):
        if units_per_pair[p] < min_units:
            continue
        a, b = divmod(int(pairs[p]), ncoder)
        column = boots[:, p][np.isfinite(boots[:, p])] if len(boots) else np.zeros(0)
        low = high = None
        if len(column) >= max(10, n_boot // 2) and units_per_pair[p] >= 2:
            low, high = (float(x) for x in np.percentile(column, [tail, 100 - tail]))
        agreement = float(np.trace(base[p]) / base[p].sum())
        value_p = float(kappas[p]) if np.isfinite(kappas[p]) else None
        note = "" if value_p is not None else "both coders used one and the same category: kappa is undefined"
        result.append(
            PairKappa(
                a,
                b,
                Estimate(value_p, low, high, n_units=int(units_per_pair[p]), n_pairs=int(units_per_pair[p]), note=note),
                agreement,
            )
        )
    return result


# --- each coder against the others, and against a reference (gold) -------------------------------


@dataclass(frozen=True)
class CoderFigures:
    coder: int
    agreement: Estimate  # share of this coder's pairs (with other coders) that agree
    kappa: Estimate  # Cohen's kappa of the pooled (this coder, other coder) pairs


def coder_vs_others(unit, coder, value, *, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> list[CoderFigures]:
    """Each coder against the others who rated the same units: the pooled pairs (theirs, another's)."""
    unit, value, coder = _clean(unit, value, coder)
    if len(unit) == 0:
        return []
    unit, n_units = _compact(unit)
    n_values = int(value.max()) + 1
    i, j = pairs_within_units(unit)
    keep = coder[i] != coder[j]
    i, j = i[keep], j[keep]
    # Both directions: each pair counts for each of its two coders, from that coder's side.
    own = np.concatenate([i, j])
    other = np.concatenate([j, i])
    n_coders = int(coder.max()) + 1
    cell = (coder[own] * n_values + value[own]) * n_values + value[other]
    size = n_coders * n_values * n_values
    pair_unit = unit[own]

    def tables(w_unit):
        return np.bincount(cell, weights=w_unit[pair_unit], minlength=size).reshape(n_coders, n_values, n_values)

    def agree(t):
        n = t.sum((1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.trace(t, axis1=1, axis2=2) / n

    base = tables(np.ones(n_units))
    n_pairs = base.sum((1, 2))
    # Units each coder shares with another coder: their ratings that have a partner (one
    # rating per coder and unit, as Tally's labels are).
    partnered = np.zeros(len(unit), dtype=bool)
    partnered[own] = True
    units_of = np.bincount(coder[partnered], minlength=n_coders)
    boot_k, boot_a = [], []
    if n_boot > 0 and n_units >= 2:
        rng = np.random.default_rng(seed)
        for _ in range(n_boot):
            w = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units).astype(np.float64)
            t = tables(w)
            boot_k.append(_kappa_from_tables(t))
            boot_a.append(agree(t))
    out = []
    kappas, agreements = _kappa_from_tables(base), agree(base)
    for c in range(n_coders):
        if n_pairs[c] == 0:
            continue
        out.append(
            CoderFigures(
                c,
                _estimate(agreements[c], [b[c] for b in boot_a], int(units_of[c]), int(n_pairs[c]), n_boot),
                _estimate(kappas[c], [b[c] for b in boot_k], int(units_of[c]), int(n_pairs[c]), n_boot),
            )
        )
    return out


def _estimate(point, boots, n_units: int, n_pairs: int, n_boot: int) -> Estimate:
    if not np.isfinite(point):
        return _none("undefined (a single category on both sides)", n_units, n_pairs)
    column = np.asarray([b for b in boots if np.isfinite(b)])
    low = high = None
    if len(column) >= max(10, n_boot // 2) and n_units >= 2:
        tail = (1 - CONFIDENCE) / 2 * 100
        low, high = (float(x) for x in np.percentile(column, [tail, 100 - tail]))
    return Estimate(float(point), low, high, n_units=n_units, n_pairs=n_pairs)


@dataclass(frozen=True)
class CoderVsReference:
    coder: int
    accuracy: Estimate
    kappa: Estimate


def coder_vs_reference(coder, value, reference, *, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> list[CoderVsReference]:
    """Each coder's ratings against a reference value per rating (gold): accuracy and Cohen's
    kappa; ratings whose reference is missing (< 0) are left out. Intervals resample ratings."""
    coder = np.asarray(coder, dtype=np.int64)
    value = np.asarray(value, dtype=np.int64)
    reference = np.asarray(reference, dtype=np.int64)
    keep = (value >= 0) & (reference >= 0)
    coder, value, reference = coder[keep], value[keep], reference[keep]
    if not len(coder):
        return []
    n_values = int(max(value.max(), reference.max())) + 1
    n_coders = int(coder.max()) + 1
    cell = (coder * n_values + reference) * n_values + value
    size = n_coders * n_values * n_values

    def tables(w):
        return np.bincount(cell, weights=w, minlength=size).reshape(n_coders, n_values, n_values)

    def acc(t):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.trace(t, axis1=1, axis2=2) / t.sum((1, 2))

    base = tables(np.ones(len(coder)))
    boot_k, boot_a = [], []
    if n_boot > 0 and len(coder) >= 2:
        rng = np.random.default_rng(seed)
        for _ in range(n_boot):
            w = np.bincount(rng.integers(0, len(coder), len(coder)), minlength=len(coder)).astype(np.float64)
            t = tables(w)
            boot_k.append(_kappa_from_tables(t))
            boot_a.append(acc(t))
    counts = np.bincount(coder, minlength=n_coders)
    kappas, accs = _kappa_from_tables(base), acc(base)
    return [
        CoderVsReference(
            c,
            _estimate(accs[c], [b[c] for b in boot_a], int(counts[c]), int(counts[c]), n_boot),
            _estimate(kappas[c], [b[c] for b in boot_k], int(counts[c]), int(counts[c]), n_boot),
        )
        for c in range(n_coders)
        if counts[c]
    ]
