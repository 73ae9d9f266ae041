"""The first model on a cold pool (issue 12's target: the first version within 30 s of the
project reaching its minimum labels, on 6,000 long texts, CPU).

The real stack: a fresh PostgreSQL database, Redis, and ONE Celery worker serving the
training, default and embedding queues (as `make demo` runs it). 6,000 long texts (each an AG
News article followed by five others of its class: about 250 tokens) are imported through the
import service, so nothing is embedded beforehand: the pool's embedding starts when the import
commits. A simulated annotator then labels in the queue's order with the gold answers, one
label every `--pace` seconds, until the first model version is current. Measured: from the
submission that reached the project's minimum labels to that version, with its stages, and how
much of the pool was embedded by then.

    python bench/first_version_bench.py [--texts 6000] [--pace 1.0]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.training_bench import (  # noqa: E402
    _django,
    _fresh_database,
    _make_project,
    _start_worker,
    _wait,
    ag_split,
    machine,
)
from training.ml.data import AG_NEWS_CLASSES  # noqa: E402

RESULTS = ROOT / "bench-results" / "first_version.json"
REPORT = ROOT / "BENCHMARKS-training.md"
START, END = "<!-- first-version:start -->", "<!-- first-version:end -->"


def long_texts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(text, label): AG News article i and five random others of its class, joined."""
    rows, y, pool, test = ag_split()
    order = np.concatenate([pool, test])[:n]
    rng = np.random.default_rng(seed)
    by_class = {c: np.flatnonzero(y == c) for c in range(len(AG_NEWS_CLASSES))}
    out = []
    for i in order:
        others = rng.choice(by_class[y[i]], size=5, replace=False)
        out.append((" ".join([rows[i][1]] + [rows[j][1] for j in others]), AG_NEWS_CLASSES[y[i]]))
    return out


def run(texts: int, pace: float) -> dict:
    db_url = os.environ.get("TALLY_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tally_bench_first")
    _fresh_database(db_url)
    _django(db_url, tempfile.mkdtemp(prefix="tally-bench-models-"))
    from django.core.files import File
    from django.core.management import call_command
    from django.db import connection

    from annotation.imports.formats import import_options
    from annotation.imports.jobs import import_upload
    from annotation.models import Annotation, Example, ImportBatch
    from training import selectors, services
    from training.models import EmbeddingCache, ModelVersion, TrainingRun

    call_command("migrate", verbosity=0)
    with connection.cursor() as cur:  # a cold pool: nothing embedded by an earlier project
        cur.execute("SELECT count(*) FROM training_embeddingcache")
        assert cur.fetchone()[0] == 0
    data = long_texts(texts)
    ctx = _make_project("First version bench", AG_NEWS_CLASSES)
    project, admin = ctx["project"], ctx["admin"]
    services.config_update(project=project, enabled=True)
    config = services.config_get(project_id=project.pk)

    log_path = ROOT / "bench-results" / "first-version-worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    worker = _start_worker(log_path)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".csv", newline="", delete=False) as fh:
            writer = csv.writer(fh)
            writer.writerow(["text"])
            writer.writerows([t] for t, _ in data)
        started = time.perf_counter()
        with open(fh.name, "rb") as upload:
            batch, _ = import_upload(
                project=project,
                created_by=admin,
                upload=File(upload, name="long.csv"),
                options=import_options(source_name="long.csv", text_column="text"),
            )
        _wait(lambda: ImportBatch.objects.get(pk=batch.pk).status in ("succeeded", "failed"), timeout=900)
        import_s = time.perf_counter() - started
        truth = dict(
            zip(
                Example.objects.filter(project=project).order_by("id").values_list("id", flat=True),
                [label for _, label in data],
                strict=True,
            )
        )
        ctx["truth"] = truth

        submits, reached_at, reached_labels = [], None, None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            annotation, _, submit_s = ctx["submit_one"]()
            submits.append(submit_s)
            n = Annotation.objects.filter(example__project=project).count()
            if reached_at is None and n >= config.min_labels:
                reached_at, reached_labels = annotation.created_at, n
            version = selectors.current_version(project=project)
            if version is not None:
                break
            time.sleep(pace)
        version = _wait(lambda: selectors.current_version(project=project), timeout=600)
        run_row = TrainingRun.objects.get(pk=version.run_id)
        first_version_s = (version.created_at - reached_at).total_seconds()
        embedded_then = EmbeddingCache.objects.filter(created_at__lte=version.created_at).count()
        labels_then = Annotation.objects.filter(example__project=project, created_at__lte=version.created_at).count()
        classes_then = len(
            {truth[e] for e in Annotation.objects.filter(example__project=project).values_list("example_id", flat=True)}
        )
        out = {
            "texts": texts,
            "mean_chars": float(np.mean([len(t) for t, _ in data])),
            "pace_s": pace,
            "import_s": import_s,
            "min_labels": config.min_labels,
            "labels_at_minimum": reached_labels,
            "first_version_s": first_version_s,
            "labels_at_first_version": labels_then,
            "classes_labeled": classes_then,
            "run_queue_wait_s": (run_row.started_at - run_row.first_event_at).total_seconds(),
            "run_s": (run_row.finished_at - run_row.started_at).total_seconds(),
            "embedding_s": version.embedding_seconds,
            "training_s": version.training_seconds,
            "scoring_s": version.scoring_seconds,
            "pool_embedded_at_first_version": embedded_then,
            "runs_failed_before": TrainingRun.objects.filter(project=project, status="failed").count(),
            "versions": ModelVersion.objects.filter(project=project).count(),
            "submit_p50_ms": 1000 * float(np.median(submits)),
            "load_avg_1m_end": os.getloadavg()[0],
        }
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except Exception:  # noqa: BLE001
            worker.kill()
    return out


def section(r: dict, machine_line: str) -> str:
    met = "met" if r["first_version_s"] <= 30 else "**missed**"
    return "\n".join(
        [
            START,
            "## First version on a cold pool of long texts (issue 12; `python bench/first_version_bench.py`)",
            "",
            f"Machine: {machine_line}. {time.strftime('%Y-%m-%d')}; 1-minute load average at the end "
            f"{r['load_avg_1m_end']:.1f}.",
            "",
            f"Real stack: fresh PostgreSQL database, Redis, one Celery worker serving the training, default and "
            f"embedding queues (as `make demo`). {r['texts']:,} long texts (an AG News article and five others of "
            f"its class, {r['mean_chars']:.0f} characters on average) imported through the import service, so "
            f"the pool embeds from cold. A simulated annotator labels in the queue's order with gold answers, "
            f"one label every {r['pace_s']:.1f} s.",
            "",
            "| measure | value |",
            "| --- | --- |",
            f"| import of the {r['texts']:,} texts | {r['import_s']:.1f} s |",
            f"| minimum labels (`min_labels`) | {r['min_labels']} |",
            f"| **reaching the minimum → first current version** | **{r['first_version_s']:.1f} s** ({met}: ≤ 30 s) |",
            f"| labels / classes labeled when it became current | {r['labels_at_first_version']} / "
            f"{r['classes_labeled']} of {len(AG_NEWS_CLASSES)} |",
            f"| its run: queued, then ran | {r['run_queue_wait_s']:.1f} s, {r['run_s']:.1f} s (embedding "
            f"{r['embedding_s']:.1f} s, training {r['training_s']:.2f} s, scoring {r['scoring_s']:.2f} s) |",
            f"| pool embedded by then | {r['pool_embedded_at_first_version']:,} of {r['texts']:,} |",
            f"| runs that failed before it (too few labels) | {r['runs_failed_before']} |",
            "",
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=6000)
    parser.add_argument("--pace", type=float, default=1.0, help="seconds between the annotator's labels")
    args = parser.parse_args()
    result = run(args.texts, args.pace)
    result["machine"] = machine()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    text = REPORT.read_text() if REPORT.exists() else ""
    block = section(result, result["machine"])
    if START in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    REPORT.write_text(text)
    print(f"wrote {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
