"""The scale benchmark's input and report (bench/scale_bench.py): no database needed."""

import csv

import pytest

from bench import scale_bench


@pytest.fixture
def ag_news(tmp_path, monkeypatch):
    rows = [("1", "Title one", "First text."), ("2", "Title two", "Second text."), ("4", "Three", "Third.")]
    with (tmp_path / "ag_news_test.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    monkeypatch.setenv("TALLY_DATASETS_DIR", str(tmp_path))
    return rows


def test_the_input_cycles_the_texts_without_a_single_duplicate(ag_news, tmp_path):
    target = tmp_path / "scale.csv"
    info = scale_bench.write_input(target, 10)
    with target.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert info["rows"] == 10 and info["distinct_texts"] == 3
    assert len(rows) == 10
    assert len({r["text"] for r in rows}) == 10  # the importer would drop duplicates
    assert rows[0] == {"text": "Title one First text.", "label": "World"}
    assert rows[3] == {"text": "Title one First text. (copy 1)", "label": "World"}
    assert rows[5]["label"] == "Sci/Tech"


def _results(**overrides) -> dict:
    summary = {"n": 3, "p50_ms": 12.0, "p95_ms": 14.0, "p99_ms": 14.5, "max_ms": 15.0, "broke": None}
    results = {
        "date": "2026-12-01T00:00:00+00:00",
        "machine": "test machine",
        "database": "PostgreSQL 15",
        "database_settings": {"autovacuum": "off"},
        "load_average_at_start": [0.1, 0.1, 0.1],
        "load_average_at_end": [0.2, 0.2, 0.2],
        "input": {"rows": 1000, "bytes": 2**20},
        "import": {
            "rows_read": 1000,
            "rows_imported": 1000,
            "rows_duplicate": 0,
            "rows_skipped": 0,
            "seconds": 0.5,
            "rows_per_second": 2000,
            "peak_rss_growth_mib": 3.0,
        },
        "vacuum_analyze_after_import_seconds": 0.1,
        "vacuum_analyze_after_training_seconds": 0.2,
        "hand_out_before_model": summary,
        "hand_out_model_order": {**summary, "broke": "claim_next exceeded the 60 s statement timeout"},
        "labels": {"labels": 10, "labels_per_second": 20.0, "claim": summary, "submit": summary},
        "train_and_score": {
            "model": "hashed",
            "run_seconds": 3.0,
            "timings": {"training": 1.0},
            "queue_head_seconds": 0.01,
            "write_seconds": 0.5,
            "pool_scored": 1000,
            "predictions": 1000,
            "peak_rss_growth_mib": 10.0,
        },
        "lists": {
            "target_ms": 300,
            "pages": [
                {"page": "fast", "status": 200, "count": 1000, "ms_median": 20.0, "error": None},
                {"page": "slow", "status": 200, "count": 1000, "ms_median": 450.0, "error": None},
                {"page": "broken", "status": None, "count": None, "ms_median": None, "error": "over the timeout"},
            ],
        },
        "embedding": {
            "texts": 512,
            "avg_chars": 240.0,
            "threads": 2,
            "cpu_fp32_sentences_per_s": 50.0,
            "cpu_projected_hours_for_pool": 5.6,
            "gpu": None,
        },
    }
    results.update(overrides)
    return results


def test_the_report_flags_every_miss_and_says_what_was_not_measured():
    text = scale_bench.render(_results())
    lines = text.splitlines()
    slow = next(line for line in lines if "slow" in line)
    fast = next(line for line in lines if "| admin list: fast" in line)
    assert "over the 300 ms target" in slow and "over the" not in fast
    assert "**over the timeout**" in next(line for line in lines if "broken" in line)
    assert "claim_next exceeded the 60 s statement timeout" in text
    assert "GPU | not measured" in text
    assert "(projected)" in text and "autovacuum off" in text


def test_the_report_names_the_gpu_it_measured():
    gpu = {"name": "NVIDIA H200", "bf16_sentences_per_s": 9000.0, "projected_minutes_for_pool": 1.9}
    results = _results()
    results["embedding"]["gpu"] = gpu
    assert "GPU (NVIDIA H200, bf16) | 9,000 texts/s" in scale_bench.render(results)
