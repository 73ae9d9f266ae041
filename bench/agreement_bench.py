"""Agreement benchmark: every agreement figure (core.agreement) and Dawid-Skene (core.aggregation)
for a project of 1,000,000 annotations, generated directly as numpy arrays; then, optionally,
the database read path (annotation.agreement: reading the accepted labels and computing the
figures) at a smaller size, in a throwaway PostgreSQL database this script creates and drops.

The generated project: texts labeled by `--overlap` (default 3) of `--annotators` (default 200)
annotators, 4 classes, annotator skill uniform in [0.5, 0.95] (a wrong label is uniform among
the others). Timed separately: each point estimate, the bootstrap intervals (`--boot`
resamples), Dawid-Skene to convergence. The target (issue 16) is the point figures of the
1,000,000-annotation project in under 5 s.

Usage:
    .venv/bin/python bench/agreement_bench.py [--annotations 1000000] [--overlap 3] \
        [--annotators 200] [--boot 200] [--db-annotations 100000] [--note "..."]

--db-annotations 0 skips the database part; with it, BENCH_DATABASE_URL names the database
(its name must contain "bench": it is dropped). Results go to BENCHMARKS-agreement.md.
"""

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

# One BLAS thread: on a small shared machine, BLAS threads fighting other processes for the
# cores made a matrix-vector product 50 times slower than it is alone. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/tally_bench_agreement"
K = 4


def log(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", flush=True)


def generate(n_annotations: int, overlap: int, n_annotators: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_units = n_annotations // overlap
    truth = rng.integers(0, K, n_units)
    skill = rng.uniform(0.5, 0.95, n_annotators)
    unit = np.repeat(np.arange(n_units), overlap)
    # `overlap` distinct annotators per text: a random start and a fixed stride.
    start = rng.integers(0, n_annotators, n_units)
    coder = (np.repeat(start, overlap) + np.tile(np.arange(overlap), n_units)) % n_annotators
    right = rng.random(len(unit)) < skill[coder]
    wrong = (truth[unit] + rng.integers(1, K, len(unit))) % K
    value = np.where(right, truth[unit], wrong)
    return unit, coder, value, n_units


def timed(rows: list, name: str, fn):
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    rows.append((name, seconds, result))
    log(f"{name}: {seconds:.3f} s")
    return result


def describe(result) -> str:
    from core.agreement import Estimate

    if isinstance(result, Estimate):
        if result.value is None:
            return result.note
        interval = f" [{result.low:.4f}, {result.high:.4f}]" if result.low is not None else ""
        return f"{result.value:.4f}{interval}, n = {result.n_units} texts"
    if isinstance(result, list):
        return f"{len(result)} rows"
    if hasattr(result, "iterations"):
        return f"{result.iterations} iterations, converged: {result.converged}"
    if hasattr(result, "label_names"):  # annotation.agreement.Ratings
        return f"{len(result):,} ratings"
    if isinstance(result, dict):
        return f"alpha {result['alpha']['value']:.4f}, {result['n_annotations']} annotations"
    return str(result)


def in_memory(args) -> list:
    from core import aggregation
    from core import agreement as ag

    unit, coder, value, n_units = generate(args.annotations, args.overlap, args.annotators)
    log(f"generated {len(unit):,} annotations on {n_units:,} texts by {args.annotators} annotators")
    rows: list = []
    started = time.perf_counter()
    timed(rows, "alpha (nominal), point", lambda: ag.alpha(unit, value, n_boot=0))
    timed(rows, "percent agreement, point", lambda: ag.percent_agreement(unit, value, n_boot=0))
    timed(rows, "Fleiss' kappa, point", lambda: ag.fleiss_kappa(unit, value, n_boot=0))
    timed(rows, "Cohen's kappa, every pair, point", lambda: ag.cohen_pairs(unit, coder, value, n_boot=0))
    timed(rows, "each annotator vs the others, point", lambda: ag.coder_vs_others(unit, coder, value, n_boot=0))
    masks = 1 << value
    timed(rows, "alpha (MASI over sets), point", lambda: ag.alpha_masi(unit, masks, n_boot=0))
    points = time.perf_counter() - started
    rows.append(("all point figures above", points, None))
    timed(rows, f"alpha with {args.boot} bootstrap resamples", lambda: ag.alpha(unit, value, n_boot=args.boot))
    timed(
        rows,
        f"percent agreement with {args.boot} resamples",
        lambda: ag.percent_agreement(unit, value, n_boot=args.boot),
    )
    timed(
        rows,
        "Dawid-Skene (to convergence: log-likelihood change < 1e-7 relative, at most 200 iterations)",
        lambda: aggregation.dawid_skene(unit, coder, value, n_units, args.annotators, K),
    )
    return rows


def with_database(args) -> list:
    import psycopg

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    name = urlparse(url).path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"BENCH_DATABASE_URL must name a database containing 'bench' (it is dropped): {name}")
    parts = urlparse(url)
    admin = psycopg.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username, dbname="postgres", autocommit=True
    )
    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django
    from django.core.management import call_command

    django.setup()
    rows: list = []
    try:
        log("migrating the bench database")
        call_command("migrate", verbosity=0)
        rows.extend(_db_measure(args))
    finally:
        from django.db import connections

        connections.close_all()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    return rows


def _db_measure(args) -> list:
    from django.db import connection

    from annotation import agreement
    from annotation import services as annotation_services
    from tests.factories import UserFactory

    n = args.db_annotations
    unit, coder, value, n_units = generate(n, args.overlap, args.annotators, seed=1)
    admin = UserFactory(username="bench-admin")
    project = annotation_services.project_create(
        name="Agreement bench", labels=[f"class {i}" for i in range(K)], created_by=admin
    )
    label_ids = list(project.labels.order_by("order", "id").values_list("pk", flat=True))
    log(f"inserting {n:,} annotations on {n_units:,} texts")
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, "
            "is_active, date_joined) SELECT '!', false, 'bench-' || g, '', '', '', false, true, now() "
            "FROM generate_series(0, %s - 1) g",
            [args.annotators],
        )
        cur.execute("SELECT id FROM auth_user WHERE username LIKE 'bench-%%' AND username <> 'bench-admin' ORDER BY id")
        users = np.array([r[0] for r in cur.fetchall()])
        cur.execute(
            "INSERT INTO annotation_example (project_id, text, text_hash, meta, submitted_count, priority, "
            "priority_reason, created_at) SELECT %s, 'text ' || g, md5('text ' || g) || md5(g::text), '{}', %s, 0, '', "
            "now() FROM generate_series(0, %s - 1) g",
            [project.pk, args.overlap, n_units],
        )
        cur.execute("SELECT min(id) FROM annotation_example WHERE project_id = %s", [project.pk])
        first_example = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO annotation_annotation (project_id, example_id, annotator_id, status, source, created_at) "
            "SELECT %s, e, a, 'accepted', 'human', now() FROM unnest(%s::bigint[], %s::bigint[]) AS v(e, a) "
            "RETURNING id",
            [project.pk, (unit + first_example).tolist(), users[coder].tolist()],
        )
        ann_ids = [r[0] for r in cur.fetchall()]
        cur.execute(
            "INSERT INTO annotation_annotation_labels (annotation_id, label_id) "
            "SELECT a, l FROM unnest(%s::bigint[], %s::bigint[]) AS v(a, l)",
            [ann_ids, np.asarray(label_ids)[value].tolist()],
        )
        cur.execute("ANALYZE")
    rows: list = []
    ratings = timed(
        rows, f"DB: read {n:,} accepted labels (ratings_for)", lambda: agreement.ratings_for(project=project)
    )
    timed(rows, "DB: every figure, point (figures, n_boot=0)", lambda: agreement.figures(ratings, n_boot=0))
    timed(
        rows,
        f"DB: project_agreement with {args.boot} resamples",
        lambda: agreement.project_agreement(project=project, n_boot=args.boot),
    )
    return rows


def write(args, memory_rows, db_rows) -> None:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?", "?", "?")
    lines = [
        "# Agreement benchmark (`make bench-agreement`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {cpu}, {os.cpu_count()} logical CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}. Load average at the end: "
        f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}. The machine is shared and loaded (2 cores for several "
        "people at once): read the figures as upper bounds, and rerun on a quiet machine before comparing.",
        "",
        f"Generated project: {args.annotations:,} annotations, {args.overlap} annotators per text, "
        f"{args.annotators} annotators, {K} classes (bench/agreement_bench.py says how).",
        "",
        "| Step | Seconds | Result |",
        "| --- | ---: | --- |",
    ]
    lines += [f"| {name} | {s:.3f} | {describe(r) if r is not None else ''} |" for name, s, r in memory_rows]
    if db_rows:
        lines += [
            "",
            f"Database read path (PostgreSQL, {args.db_annotations:,} annotations inserted directly):",
            "",
            "| Step | Seconds | Result |",
            "| --- | ---: | --- |",
        ]
        lines += [f"| {name} | {s:.3f} | {describe(r) if r is not None else ''} |" for name, s, r in db_rows]
    if args.note:
        lines += ["", args.note]
    (ROOT / "BENCHMARKS-agreement.md").write_text("\n".join(lines) + "\n")
    log("wrote BENCHMARKS-agreement.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", type=int, default=1_000_000)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--annotators", type=int, default=200)
    parser.add_argument("--boot", type=int, default=200)
    parser.add_argument("--db-annotations", type=int, default=100_000)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    memory_rows = in_memory(args)
    db_rows = with_database(args) if args.db_annotations > 0 else []
    write(args, memory_rows, db_rows)


if __name__ == "__main__":
    main()
