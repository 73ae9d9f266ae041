"""Pool write benchmark: what a training run writes after scoring the whole pool, at N examples.

    .venv/bin/python bench/pool_write_bench.py --examples 100000      # or: make bench-pool-write

A throwaway PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/tally_bench_pool_write, dropped and created again: its name
must contain "bench") gets one project with --examples examples (bulk SQL; the importer's own
speed is bench-import's) and its cold-start order. Then, for two model versions in turn, the
writes training/pipeline.py `_write` makes after a run through training.runs: the queue's head
(1,000 positions), the whole pool's positions (`priorities_write`, every row: each version lifts
its positions above the last one's) and every example's prediction (`predictions_write`: inserts
for the first version, updates of those that moved for the second). Random scores, a fixed seed.

Results: BENCHMARKS-pool-write.md and bench-results/pool_write.json.
"""

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/tally_bench_pool_write"


def recreate(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    if "bench" not in name:
        sys.exit(f"Refusing to drop {name!r}: the benchmark database's name must contain 'bench'")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def machine() -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    return f"{os.cpu_count()}-core {platform.machine()} ({cpu}), {mem:,} MiB RAM, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="leave the benchmark database in place")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG))
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS-pool-write.md"))
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "pool_write.json"))
    args = parser.parse_args()
    load_start = [round(x, 2) for x in os.getloadavg()]
    recreate(args.database_url)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    os.environ["DATABASE_URL"] = args.database_url
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from annotation import services
    from annotation.models import Example
    from training import runs
    from training.models import ModelVersion, Prediction, TrainingRun

    call_command("migrate", verbosity=0)
    admin = get_user_model().objects.create_user("bench-admin")
    project = services.project_create(name="pool", labels=["a", "b", "c", "d"], created_by=admin)
    classes = list(project.labels.order_by("id").values_list("id", flat=True))
    n = args.examples
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {Example._meta.db_table} (project_id, text, text_hash, meta, submitted_count, priority, "  # noqa: S608
            "priority_reason, extra_annotations, routed_reason, created_at) "
            "SELECT %s, 'text ' || i, encode(sha256(('text ' || i)::bytea), 'hex'), "
            "'{}', 0, 1.0 - i::float8 / %s, 'random', 0, '', now() FROM generate_series(1, %s) AS i",
            [project.pk, n, n],
        )
        cur.execute(f"VACUUM ANALYZE {Example._meta.db_table}")
    seed_seconds = time.perf_counter() - started
    ids = np.asarray(Example.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    rng = np.random.default_rng(18)
    config = runs.config_get(project_id=project.pk)
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "examples": n,
        "seed_seconds": round(seed_seconds, 1),
        "load_average_at_start": load_start,
        "versions": [],
    }
    parent = None
    for sequence in (1, 2):
        run = TrainingRun.objects.create(project=project, status=TrainingRun.Status.SUCCEEDED)
        version = ModelVersion.objects.create(
            project=project,
            sequence=sequence,
            parent=parent,
            run=run,
            kind="hashed",
            loop="fast",
            device="cpu",
            classes=classes,
            manifest_hash=f"{sequence:064x}",
            weights_path=f"bench/{sequence}.safetensors",
            weights_sha256="0" * 64,
            snapshot_at=timezone.now(),
        )
        config.current_version = version
        config.save(update_fields=["current_version"])
        logits = rng.normal(size=(n, len(classes)))
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        top2 = np.sort(probs, 1)[:, -2:]
        margins = top2[:, 1] - top2[:, 0]
        entropies = -(probs * np.log(probs)).sum(1)
        priorities = rng.permutation(np.linspace(1.0, 1.0 / n, n))
        reasons = np.asarray(["uncertainty"] * n, dtype=object)
        timings = {}
        t = time.perf_counter()
        runs.priorities_write(
            version=version, example_ids=ids, priorities=priorities, head=runs.QUEUE_HEAD, reasons=reasons
        )
        timings["queue_head_seconds"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        assert runs.priorities_write(version=version, example_ids=ids, priorities=priorities, reasons=reasons)
        timings["priorities_seconds"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        assert runs.predictions_write(
            version=version, example_ids=ids, probs=probs, margins=1.0 - margins, entropies=entropies
        )
        timings["predictions_seconds"] = round(time.perf_counter() - t, 2)
        timings["whole_pool_seconds"] = round(timings["priorities_seconds"] + timings["predictions_seconds"], 2)
        assert Prediction.objects.filter(project=project, version=version).exists()
        results["versions"].append({"sequence": sequence, **timings})
        print(f"version {sequence}: {timings}", flush=True)
        parent = version
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    with connection.cursor() as cur:
        cur.execute("SELECT version()")
        results["server"] = cur.fetchone()[0].split(" on ")[0]
        cur.execute(
            "SELECT name, setting, unit FROM pg_settings WHERE name IN "
            "('shared_buffers', 'max_wal_size', 'work_mem', 'synchronous_commit')"
        )
        results["settings"] = {
            name: f"{int(setting) * 8 // 1024} MB" if unit == "8kB" else f"{setting}{unit or ''}"
            for name, setting, unit in cur.fetchall()
        }
    connection.close()
    if not args.keep:
        recreate(args.database_url)  # leave an empty database
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    rows = "\n".join(
        f"| {v['sequence']} ({'inserts' if v['sequence'] == 1 else 'updates'}) | {v['queue_head_seconds']:.3f} s | "
        f"{v['priorities_seconds']:.2f} s | {v['predictions_seconds']:.2f} s | **{v['whole_pool_seconds']:.2f} s** |"
        for v in results["versions"]
    )
    from bench.report_files import write_keeping_notes

    write_keeping_notes(
        args.out,
        f"""# Pool write benchmark

`make bench-pool-write` (bench/pool_write_bench.py; the method is in its docstring): what a
training run writes after scoring the whole pool, at {n:,} examples, through training.runs.

Machine: {results["machine"]}; {results["server"]} ({", ".join(f"{k} {v}" for k, v in results["settings"].items())}).
Load average {load_start} at the start, {results["load_average_at_end"]} at the end (above 1 per
core the machine is shared and figures vary). Measured {results["measured_at"]}.

| version (prediction rows) | queue head (1,000) | whole pool's positions | predictions | whole pool |
| --- | ---: | ---: | ---: | ---: |
{rows}

Raw figures: bench-results/pool_write.json.
""",
    )
    print(f"wrote {args.out} and {args.json}")


if __name__ == "__main__":
    main()
