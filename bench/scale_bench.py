"""Scale benchmark: one project with 1,000,000 examples on PostgreSQL, end to end.

    .venv/bin/python bench/scale_bench.py [--examples 1000000] [--labels 1000] [--keep]
    # or: make bench-scale (this, then the ledger and labor report at 1,000,000 annotations)

In a throwaway database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/tally_bench_scale; its name must contain "bench": it is
dropped and created again), with bench.peers.settings (DEBUG off; training tasks parked so
that only this process trains), each step timed in this process through Tally's own code:

1. import: a generated CSV of `--examples` rows (the 7,600 AG News texts of
   ../shared/datasets/ag_news_test.csv, cycled, each pass suffixed " (copy N)" so no row is a
   duplicate; the AG News class as the gold label) through annotation.imports.runs.import_run,
   what the import API's worker and `manage.py import_examples` run: parse, de-duplicate,
   insert, commit. Rows/s and the growth of this process's peak memory.
2. hand-outs before any model: `annotation.services.claim_next` for fresh annotators (each
   followed by a skip), under a statement timeout, so a size where the query breaks ends the
   step instead of the run.
3. labels: `--labels` claims and submits through the services (ledger entries included).
4. a training run of the from-scratch model (hashed n-grams) through the real pipeline
   (training.pipeline.execute_run): featurize every text, fit, score all examples, write the
   queue order and the predictions. Its stage timings are the "scoring 1,000,000 texts, CPU"
   row, measured, not projected.
5. hand-outs again, now in the model's order.
6. admin list pages through the API views (in-process, DRF's test client, no network):
   examples (first and middle page), predictions filtered by label, by confidence band, and
   unlabeled ones ordered by margin (first and middle page).
7. MiniLM embedding throughput on 512 AG News texts, CPU fp32 (and the GPU when torch sees
   one), projected to `--examples` texts: embedding a million texts takes hours on 2 CPU
   cores, so that figure is projected and says so.

Results: bench-results/scale.json and BENCHMARKS-scale.md.
"""

import argparse
import csv
import json
import os
import platform
import resource
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/tally_bench_scale"
AG_CLASSES = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}
LIST_TARGET_MS = 300


def log(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", flush=True)


def datasets_dir() -> Path:
    return Path(os.environ.get("TALLY_DATASETS_DIR") or ROOT.parent / "shared" / "datasets")


def machine() -> str:
    from bench.peers.run import machine as machine_facts

    m = machine_facts()
    return f"{m['cpu_model']}, {m['cores']} cores, {m['memory_gib']:.0f} GiB RAM, Python {platform.python_version()}"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the input --------------------------------------------------------------------------------


def write_input(target: Path, rows: int) -> dict:
    source = datasets_dir() / "ag_news_test.csv"
    if not source.exists():
        sys.exit(f"{source} is missing: put the shared datasets beside the checkout or set TALLY_DATASETS_DIR")
    with source.open(newline="", encoding="utf-8") as f:
        base = [(f"{title} {description}", AG_CLASSES[cls]) for cls, title, description in csv.reader(f)]
    with target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "label"])
        for i in range(rows):
            copy, row = divmod(i, len(base))
            text, label = base[row]
            writer.writerow([f"{text} (copy {copy})" if copy else text, label])
    return {"rows": rows, "bytes": target.stat().st_size, "source": "ag_news_test.csv", "distinct_texts": len(base)}


# --- the steps ----------------------------------------------------------------------------------


def step_import(admin, path: Path, results: dict):
    from annotation import services
    from annotation.imports.formats import import_options
    from annotation.imports.jobs import import_batch_create
    from annotation.imports.runs import import_run

    project = services.project_create(
        name="Scale benchmark", labels=list(AG_CLASSES.values()), created_by=admin, currency="USD"
    )
    options = import_options(source_name=path.name, text_column="text", label_column="label")
    batch, _ = import_batch_create(project=project, created_by=admin, source_name=path.name, options=options)
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    with path.open("rb") as stream:
        batch = import_run(batch=batch, stream=stream, bytes_total=path.stat().st_size)
    seconds = time.perf_counter() - started
    if batch.status != "succeeded":
        sys.exit(f"import failed: {batch.error}")
    results["import"] = {
        "rows_read": batch.rows_read,
        "rows_imported": batch.rows_imported,
        "rows_duplicate": batch.rows_duplicate,
        "rows_skipped": batch.rows_skipped,
        "seconds": round(seconds, 2),
        "rows_per_second": round(batch.rows_read / seconds),
        "peak_rss_growth_mib": round(peak_rss_mib() - rss_before, 1),
    }
    # The from-scratch model: the MiniLM default would embed a million texts first (hours on
    # two cores; step_embedding measures that rate instead).
    from django.db import transaction

    from training import services as training_services
    from training.models import ModelKind

    with transaction.atomic():
        training_services.config_update(project=project, model_kind=ModelKind.HASHED)
    log(f"import: {batch.rows_imported:,} rows in {seconds:.1f} s ({batch.rows_read / seconds:,.0f} rows/s)")
    results["vacuum_analyze_after_import_seconds"] = vacuum_analyze("annotation_example")
    return project


def vacuum_analyze(*tables: str) -> float:
    """What autovacuum does after bulk writes (statistics, visibility map), done at once and
    timed: autovacuum is off on this machine's PostgreSQL, and stale statistics after a million
    new rows make the planner choose nested loops that take minutes."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")
    return round(time.perf_counter() - started, 1)


def step_hand_outs(project, tag: str, fetches: int, timeout_s: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.db.utils import OperationalError

    from annotation import services
    from annotation.models import Membership
    from bench.peers.stats import latency_summary

    user_model = get_user_model()
    seconds, broke = [], None
    with connection.cursor() as cursor:
        cursor.execute(f"SET statement_timeout = {timeout_s * 1000}")
    try:
        for i in range(fetches):
            annotator = user_model.objects.create(username=f"scale-{tag}-{i}-{secrets.token_hex(3)}")
            services.membership_set(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
            started = time.perf_counter()
            try:
                with transaction.atomic():
                    attempt = services.claim_next(project=project, annotator=annotator)
            except OperationalError as exc:
                broke = f"claim_next exceeded the {timeout_s} s statement timeout: {str(exc).splitlines()[0]}"
                break
            seconds.append(time.perf_counter() - started)
            services.attempt_skip(attempt_id=attempt.pk, annotator=annotator)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")
    summary = latency_summary(seconds)
    log(f"hand-outs ({tag}): p50 {summary['p50_ms'] or 0:.1f} ms, p95 {summary['p95_ms'] or 0:.1f} ms {broke or ''}")
    return {**summary, "broke": broke}


def step_labels(project, n: int) -> dict:
    """One annotator labels `n` texts with the gold label through the services (claim + submit,
    each its own transaction, as the API runs them)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from annotation import services
    from annotation.models import Label, Membership
    from bench.peers.stats import latency_summary

    annotator = get_user_model().objects.create(username=f"scale-labeler-{secrets.token_hex(3)}")
    services.membership_set(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
    label_of = dict(Label.objects.filter(project=project).values_list("name", "pk"))
    claims, submits = [], []
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        with transaction.atomic():
            attempt = services.claim_next(project=project, annotator=annotator)
        t1 = time.perf_counter()
        gold = attempt.example.gold_label.name if attempt.example.gold_label_id else next(iter(label_of))
        with transaction.atomic():
            services.annotation_submit(
                attempt_id=attempt.pk, annotator=annotator, label_ids=[label_of[gold]], idempotency_key=f"scale-{i}"
            )
        submits.append(time.perf_counter() - t1)
        claims.append(t1 - t0)
    wall = time.perf_counter() - started
    out = {
        "labels": n,
        "seconds": round(wall, 2),
        "labels_per_second": round(n / wall, 1),
        "claim": latency_summary(claims),
        "submit": latency_summary(submits),
    }
    log(f"labels: {n} in {wall:.1f} s ({n / wall:.1f}/s, submit p50 {out['submit']['p50_ms']:.1f} ms)")
    return out


def step_train_and_score(project, admin) -> dict:
    from training import pipeline, services
    from training.models import ModelVersion, Prediction, TrainingRun

    TrainingRun.objects.filter(project=project, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.FAILED, error="superseded by the benchmark's own run"
    )
    run = services.training_run_request(project=project, requested_by=admin)
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    version_id = pipeline.execute_run(run_id=run.pk)
    seconds = time.perf_counter() - started
    run.refresh_from_db()
    if version_id is None:
        sys.exit(f"the training run failed: {run.status} {run.error}")
    version = ModelVersion.objects.get(pk=version_id)
    progress = run.progress or {}
    out = {
        "model": "hashed n-grams, trained from scratch",
        "run_seconds": round(seconds, 1),
        "timings": {
            "training": round(version.training_seconds, 2),
            "scoring (evaluation and the whole pool)": round(version.scoring_seconds, 2),
            # the rest of the run: the label snapshot, reading and hashing every text, the weights
            "snapshot and featurizing": round(
                seconds
                - version.training_seconds
                - version.scoring_seconds
                - ((run.progress or {}).get("write_seconds") or 0),
                2,
            ),
        },
        "queue_head_seconds": progress.get("queue_head_seconds"),
        "write_seconds": progress.get("write_seconds"),
        "pool_written": progress.get("pool_written"),
        "pool_scored": version.metrics.get("pool_scored"),
        "predictions": Prediction.objects.filter(project=project).count(),
        "accuracy": version.metrics.get("accuracy"),
        "peak_rss_growth_mib": round(peak_rss_mib() - rss_before, 1),
    }
    log(f"training + scoring: {out}")
    return out


def step_lists(project, admin, size: int, timeout_s: int) -> dict:
    from rest_framework.test import APIClient

    from annotation.models import Label

    client = APIClient(SERVER_NAME="127.0.0.1")
    client.force_authenticate(admin)
    label = Label.objects.filter(project=project).order_by("pk").first()
    middle = max(size // 50 // 2, 1)
    base = f"/api/projects/{project.slug}"
    pages = [
        ("examples, page 1", f"{base}/examples/", {"page": 1}),
        (f"examples, page {middle:,}", f"{base}/examples/", {"page": middle}),
        ("predictions of one label, page 1", f"{base}/predictions/", {"label": label.pk}),
        (
            "predictions of one label, confidence 0.4-0.6, page 1",
            f"{base}/predictions/",
            {"label": label.pk, "min_confidence": 0.4, "max_confidence": 0.6},
        ),
        ("unlabeled, least margin first, page 1", f"{base}/predictions/", {"labeled": "false", "ordering": "margin"}),
        (
            f"predictions of one label, page {middle // 4:,}",
            f"{base}/predictions/",
            {"label": label.pk, "page": max(middle // 4, 1)},
        ),
    ]
    from django.db import connection
    from django.db.utils import OperationalError

    out = []
    with connection.cursor() as cursor:
        cursor.execute(f"SET statement_timeout = {timeout_s * 1000}")
    for name, url, params in pages:
        times, status, count, error = [], None, None, None
        for _ in range(3):
            started = time.perf_counter()
            try:
                response = client.get(url, params)
            except OperationalError as exc:
                error = f"over the {timeout_s} s statement timeout: {str(exc).splitlines()[0]}"
                break
            times.append((time.perf_counter() - started) * 1000)
            status = response.status_code
            if status == 200:
                count = response.json().get("count")
        median = round(statistics.median(times), 1) if times else None
        out.append({"page": name, "status": status, "count": count, "ms_median": median, "error": error})
        log(f"list {name}: {out[-1]}")
    with connection.cursor() as cursor:
        cursor.execute("RESET statement_timeout")
    return {"target_ms": LIST_TARGET_MS, "pages": out}


def step_embedding(size: int) -> dict:
    import numpy as np
    import torch

    from training.ml.device import configure_threads
    from training.ml.encoder import load_encoder

    threads = configure_threads(int(os.environ.get("TALLY_TRAINING_THREADS", "2")))
    source = datasets_dir() / "ag_news_test.csv"
    with source.open(newline="", encoding="utf-8") as f:
        texts = [f"{title} {description}" for _, title, description in csv.reader(f)][:512]
    out = {"texts": len(texts), "avg_chars": round(float(np.mean([len(t) for t in texts])), 1), "threads": threads}
    encoder = load_encoder("cpu")
    encoder.embed(texts[:64])  # warm-up
    started = time.perf_counter()
    encoder.embed(texts, batch_size=64)
    rate = len(texts) / (time.perf_counter() - started)
    out["cpu_fp32_sentences_per_s"] = round(rate, 1)
    out["cpu_projected_hours_for_pool"] = round(size / rate / 3600, 1)
    if torch.cuda.is_available():
        gpu = load_encoder("cuda")
        gpu.embed(texts[:64], bf16=True)
        torch.cuda.synchronize()
        started = time.perf_counter()
        gpu.embed(texts * 8, batch_size=256, bf16=True)
        torch.cuda.synchronize()
        gpu_rate = 8 * len(texts) / (time.perf_counter() - started)
        out["gpu"] = {
            "name": torch.cuda.get_device_name(0),
            "bf16_sentences_per_s": round(gpu_rate, 1),
            "projected_minutes_for_pool": round(size / gpu_rate / 60, 1),
        }
    else:
        out["gpu"] = None
    log(f"embedding: {out}")
    return out


# --- the run -------------------------------------------------------------------------------------


def recreate_database(url: str) -> None:
    import psycopg

    name = urlparse(url).path.lstrip("/")
    if "bench" not in name:
        sys.exit(f"Refusing to drop {name!r}: the benchmark database's name must contain 'bench'")
    base = url.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    import psycopg

    name = urlparse(url).path.lstrip("/")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=1000, help="labels given before the training run")
    parser.add_argument("--fetches", type=int, default=30, help="timed hand-outs before and after the model")
    parser.add_argument("--timeout-seconds", type=int, default=60, help="statement timeout of each hand-out")
    parser.add_argument("--skip-embedding", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the benchmark database in place")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "scale.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS-scale.md")
    args = parser.parse_args(argv)
    if args.examples < 1000 or args.labels < 10:
        parser.error("--examples must be at least 1000 and --labels at least 10")

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    recreate_database(url)
    store = Path(tempfile.mkdtemp(prefix="tally-bench-scale-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.peers.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DATABASE_URL=url,
        BENCH_CELERY_QUEUE=f"bench-scale-{secrets.token_hex(4)}",
        TALLY_MODEL_STORE=str(store / "models"),
        TALLY_MEDIA_ROOT=str(store / "media"),
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, connections

    results: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "note": args.note,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            results["database"] = f"PostgreSQL {cursor.fetchone()[0].split()[0]}"
            settings_shown = {}
            for name in ("shared_buffers", "max_wal_size", "work_mem", "autovacuum", "synchronous_commit"):
                cursor.execute(f"SHOW {name}")
                settings_shown[name] = cursor.fetchone()[0]
            results["database_settings"] = settings_shown
        admin = get_user_model().objects.create(username="scale-admin", is_staff=False)
        path = store / f"scale-{args.examples}.csv"
        log(f"writing {args.examples:,} rows to {path}")
        results["input"] = write_input(path, args.examples)
        project = step_import(admin, path, results)
        path.unlink()
        results["hand_out_before_model"] = step_hand_outs(project, "before", args.fetches, args.timeout_seconds)
        results["labels"] = step_labels(project, args.labels)
        results["train_and_score"] = step_train_and_score(project, admin)
        results["vacuum_analyze_after_training_seconds"] = vacuum_analyze(
            "training_prediction", "annotation_example", "annotation_annotation", "annotation_attempt"
        )
        results["hand_out_model_order"] = step_hand_outs(project, "after", args.fetches, args.timeout_seconds)
        results["lists"] = step_lists(project, admin, args.examples, args.timeout_seconds)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
            results["database_size"] = cursor.fetchone()[0]
        if not args.skip_embedding:
            results["embedding"] = step_embedding(args.examples)
    finally:
        connections.close_all()
        if not args.keep:
            drop_database(url)
        import shutil

        shutil.rmtree(store, ignore_errors=True)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    args.markdown.write_text(render(results))
    log(f"wrote {args.out} and {args.markdown}")
    return 0


def _ms(value) -> str:
    return "n/a" if value is None else f"{value:,.1f} ms"


def render(r: dict) -> str:
    imp, before, after = r["import"], r["hand_out_before_model"], r["hand_out_model_order"]
    lab, ts = r["labels"], r["train_and_score"]
    n = imp["rows_imported"]
    lines = [
        "# Scale benchmark: one project, 1,000,000 examples",
        "",
        "`make bench-scale` (bench/scale_bench.py; the ledger and labor report at 1,000,000 annotations are in "
        "[BENCHMARKS-labor-report.md](BENCHMARKS-labor-report.md)). Generated data in a throwaway PostgreSQL "
        "database, every step through Tally's own code in one process (no HTTP: the side-by-side benchmark "
        "measures the API over the network).",
        "",
        f"Machine: {r['machine']}; {r.get('database', '')} ("
        + ", ".join(f"{k} {v}" for k, v in r.get("database_settings", {}).items())
        + f"). Load average {r['load_average_at_start']} at the "
        f"start, {r['load_average_at_end']} at the end. {r['date']}. {r.get('note') or ''}",
        "",
        "| step | result |",
        "|---|---|",
        f"| import {imp['rows_read']:,} rows (CSV, {r['input']['bytes'] / 2**20:,.0f} MiB; AG News texts cycled) | "
        f"{imp['seconds']:,.1f} s, {imp['rows_per_second']:,} rows/s; {imp['rows_imported']:,} imported, "
        f"{imp['rows_duplicate']:,} duplicates, {imp['rows_skipped']:,} skipped; peak memory grew "
        f"{imp['peak_rss_growth_mib']:,.0f} MiB |",
        f"| `VACUUM ANALYZE` after the import (autovacuum's work, done at once) | "
        f"{r['vacuum_analyze_after_import_seconds']:,.1f} s |",
        f"| next example handed out, no model yet (oldest first), {before['n']} fresh annotators | "
        f"p50 {_ms(before['p50_ms'])}, p95 {_ms(before['p95_ms'])}, max {_ms(before['max_ms'])}"
        f"{'; ' + before['broke'] if before['broke'] else ''} |",
        f"| {lab['labels']:,} labels by one annotator (claim, then submit with its ledger entries) | "
        f"{lab['labels_per_second']:,.1f} labels/s; claim p50 {_ms(lab['claim']['p50_ms'])}, "
        f"submit p50 {_ms(lab['submit']['p50_ms'])}, p95 {_ms(lab['submit']['p95_ms'])} |",
        f"| training run, {ts['model']}: featurize and score all {ts['pool_scored'] or 0:,} examples, CPU | "
        f"{ts['run_seconds']:,.1f} s in all: "
        + ", ".join(f"{k} {v:,.1f} s" for k, v in ts["timings"].items())
        + f"; queue head written in {ts['queue_head_seconds'] or 0:.2f} s, whole pool (order and "
        f"{ts['predictions']:,} predictions) in {ts['write_seconds'] or 0:.1f} s; peak memory grew "
        f"{ts['peak_rss_growth_mib']:,.0f} MiB |",
        f"| `VACUUM ANALYZE` after the training run's writes | {r['vacuum_analyze_after_training_seconds']:,.1f} s |",
        f"| next example handed out, in the model's order, {after['n']} fresh annotators | "
        f"p50 {_ms(after['p50_ms'])}, p95 {_ms(after['p95_ms'])}, max {_ms(after['max_ms'])}"
        f"{'; ' + after['broke'] if after['broke'] else ''} |",
    ]
    for page in r["lists"]["pages"]:
        if page["ms_median"] is None:
            lines.append(f"| admin list: {page['page']} | **{page['error']}** |")
            continue
        verdict = "" if page["ms_median"] < r["lists"]["target_ms"] else " **over the 300 ms target**"
        count = f", {page['count']:,} rows" if page["count"] is not None else ""
        lines.append(
            f"| admin list: {page['page']} (HTTP {page['status']}{count}) | {_ms(page['ms_median'])} median of 3"
            f"{verdict} |"
        )
    emb = r.get("embedding")
    if emb:
        lines.append(
            f"| MiniLM embedding, CPU fp32, {emb['threads']} threads ({emb['texts']} AG News texts, "
            f"{emb['avg_chars']:.0f} characters on average) | {emb['cpu_fp32_sentences_per_s']:,.1f} texts/s: "
            f"{n:,} texts would take **{emb['cpu_projected_hours_for_pool']:,.1f} hours** (projected) |"
        )
        gpu = emb.get("gpu")
        lines.append(
            f"| MiniLM embedding, GPU ({gpu['name']}, bf16) | {gpu['bf16_sentences_per_s']:,.0f} texts/s: {n:,} "
            f"texts in {gpu['projected_minutes_for_pool']:,.1f} minutes (projected from 4,096 texts) |"
            if gpu
            else "| MiniLM embedding, GPU | not measured: no GPU was lent to this run |"
        )
    size = r.get("database_size", "?")
    lines += ["", f"Database size afterwards: {size}. Raw figures: bench-results/scale.json.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
