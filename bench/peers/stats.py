"""The arithmetic of the report: percentiles, medians over repetitions, Tally/Label Studio ratios.

Kept apart from the load driver so it can be unit-tested (tests/bench_peers/test_peers_stats.py).
"""

import math
from collections.abc import Sequence

# Whether a bigger number is better for a figure: it decides which way a ratio is "a win".
HIGHER_IS_BETTER = "higher"
LOWER_IS_BETTER = "lower"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between closest ranks, the
    definition numpy.percentile uses by default ("linear"). None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float | None]) -> float | None:
    """The median of the figures that were measured (None entries are left out)."""
    present = [v for v in values if v is not None]
    return percentile(present, 50)


def latency_summary(seconds: Sequence[float]) -> dict:
    """p50/p95/p99/max in milliseconds, and how many samples they rest on."""
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
    }


def rate(count: int, seconds: float) -> float | None:
    """Events per second; None when nothing was timed."""
    if seconds <= 0:
        return None
    return count / seconds


def ratio(tally: float | None, label_studio: float | None) -> float | None:
    """Tally's figure divided by Label Studio's; None when either is missing or LS's is 0."""
    if tally is None or label_studio is None or label_studio == 0:
        return None
    return tally / label_studio


def tally_wins(ratio_value: float | None, better: str) -> bool | None:
    """Does the ratio favour Tally? For times and memory Tally wins below 1, for rates above."""
    if ratio_value is None:
        return None
    if better == HIGHER_IS_BETTER:
        return ratio_value > 1
    if better == LOWER_IS_BETTER:
        return ratio_value < 1
    raise ValueError(f"unknown direction {better!r}")


def speedup(ratio_value: float | None, better: str) -> float | None:
    """How many times better Tally is (below 1: how much worse), whatever the figure's direction."""
    if ratio_value is None or ratio_value == 0:
        return None
    return ratio_value if better == HIGHER_IS_BETTER else 1 / ratio_value
