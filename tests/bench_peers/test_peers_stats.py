"""The arithmetic behind BENCHMARKS-peers.md: percentiles, medians, ratios and their verdicts."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.peers import report
from bench.peers.stats import (
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    latency_summary,
    median,
    percentile,
    rate,
    ratio,
    speedup,
    tally_wins,
)


def test_percentile_interpolates_between_ranks():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)
    assert percentile([10, 20, 30, 40, 50], 0) == 10
    assert percentile([10, 20, 30, 40, 50], 100) == 50
    assert percentile([7], 99) == 7
    assert percentile([], 50) is None


def test_percentile_does_not_depend_on_input_order():
    assert percentile([5, 1, 4, 2, 3], 50) == 3


@given(
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200),
    st.sampled_from([50, 95, 99]),
)
def test_percentile_agrees_with_numpy(values, q):
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-9)


def test_percentile_rejects_nonsense():
    with pytest.raises(ValueError):
        percentile([1, 2], 101)


def test_median_ignores_unmeasured_repetitions():
    assert median([3.0, None, 1.0, 2.0]) == 2.0
    assert median([None, None]) is None


def test_latency_summary_is_in_milliseconds():
    summary = latency_summary([0.010, 0.020, 0.030])
    assert summary["n"] == 3
    assert summary["p50_ms"] == pytest.approx(20.0)
    assert summary["max_ms"] == pytest.approx(30.0)


def test_rate_and_ratio():
    assert rate(100, 4.0) == 25.0
    assert rate(5, 0) is None
    assert ratio(50.0, 5.0) == 10.0
    assert ratio(None, 5.0) is None
    assert ratio(5.0, 0) is None


def test_verdicts_follow_the_direction_of_each_figure():
    # A rate 10x Label Studio's: better. A latency 0.25x: better, by 4. Memory 1.5x: worse.
    assert tally_wins(10.0, HIGHER_IS_BETTER) is True
    assert speedup(10.0, HIGHER_IS_BETTER) == 10.0
    assert tally_wins(0.25, LOWER_IS_BETTER) is True
    assert speedup(0.25, LOWER_IS_BETTER) == 4.0
    assert tally_wins(1.5, LOWER_IS_BETTER) is False
    assert tally_wins(0.5, HIGHER_IS_BETTER) is False
    assert tally_wins(None, HIGHER_IS_BETTER) is None


def _run(system, rep, *, rate_1, p95_n, rss):
    return {
        "system": system,
        "rep": rep,
        "import": {"measured": True, "tasks_per_second": 1000.0 if system == "ls" else 3000.0, "seconds": 1.0},
        "annotate_1": {
            "annotations_per_second": rate_1,
            "submit_latency": {"p50_ms": 1.0},
            "stopped_by": "count",
            "requested": 10,
            "completed": 10,
            "errors": 0,
        },
        "annotate_n": {
            "annotations_per_second": rate_1,
            "submit_latency": {"p95_ms": p95_n},
            "stopped_by": "count",
            "requested": 10,
            "completed": 10,
            "errors": 0,
        },
        "memory": {"rss_mib": rss},
    }


@pytest.fixture
def data():
    runs = []
    for rep, (ls_rate, tally_rate) in enumerate([(4.0, 50.0), (2.0, 30.0), (3.0, 70.0)]):
        runs.append(_run("ls", rep, rate_1=ls_rate, p95_n=900.0, rss=300.0))
        runs.append(_run("tally-pg", rep, rate_1=tally_rate, p95_n=40.0 + rep, rss=450.0))
    return {"config": {"clients": 8, "systems": ["ls", "tally-pg"]}, "runs": runs}


def test_medians_are_taken_per_system_over_repetitions(data):
    med = report.medians(data)
    assert med["ls"]["annotate_1_rate"] == 3.0
    assert med["tally-pg"]["annotate_1_rate"] == 50.0
    assert med["tally-pg"]["annotate_1_rate_n"] == 3
    assert med["tally-pg"]["submit_n_p95"] == 41.0


def test_table_shows_ratios_and_marks_the_rows_tally_loses(data):
    table = report.table(data)
    rate_row = next(line for line in table.splitlines() if line.startswith("| Annotate, 1 client"))
    assert "16.7 (Tally 16.7x better)" in rate_row
    memory_row = next(line for line in table.splitlines() if line.startswith("| Server memory afterwards: RSS"))
    assert "**Tally 1.5x worse**" in memory_row


def test_targets_are_checked_against_the_medians(data):
    lines = "\n".join(report.targets(data))
    assert "import rate >= 2x Label Studio's: 3.0x: **met**" in lines
    assert "1 client >= 10x Label Studio's: 16.7x: **met**" in lines
    assert "submit p95 at 8 clients < 50 ms: 41.0 ms: **met**" in lines


def test_notes_name_capped_phases_and_failures_briefly(data):
    data["runs"][0]["annotate_1"].update(stopped_by="time cap", completed=4)
    data["runs"][0]["annotate_n"].update(errors=2, error_samples=["HttpError: GET /api/x answered 500: b'<html>...'"])
    lines = "\n".join(report.notes(data))
    assert "Label Studio, repetition 1: annotate_1 stopped by time cap after 4 of 10" in lines
    assert "2 failed requests, e.g. GET /api/x answered 500" in lines
    assert "<html>" not in lines
