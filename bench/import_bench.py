"""Import benchmark: 100,000 rows of SST-2 into PostgreSQL and SQLite; rows/s and memory.

    .venv/bin/python bench/import_bench.py            # or: make bench-import
    .venv/bin/python bench/import_bench.py --rows 200000 --backends postgres

The input: ../shared/datasets/sst2_train.tsv (67,349 rows, header sentence<TAB>label; set
TALLY_DATASETS_DIR to read it elsewhere) is written out once as is, then again from its first
row with " (variant N)" appended to each sentence (N = 1, 2, ... per pass) until --rows rows:
so 100,000 rows are 67,349 originals + 32,651 variants. SST-2 itself repeats 371 sentences
(after whitespace normalisation), and their variants repeat too: those rows are reported as
duplicates, as they would be for a user; all others are imported, with gold labels (0/1
mapped to negative/positive).

Each backend runs in a fresh child process on a fresh database (PostgreSQL: the database of
BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/tally_bench_import, dropped and
created again: its name must contain "bench"; SQLite: a temporary file), with
config.settings.test (DEBUG off). The timed runs import the file through
annotation.imports.runs.import_run, exactly what the command and the Celery task run: read, parse,
de-duplicate, insert, publish progress to Redis, commit. Each timed run goes into a new project
(so every run inserts the same rows); the median is reported. Memory: the process's peak RSS
(getrusage) and its growth during the import, and in separate runs under tracemalloc the peak
of Python allocations while importing the whole file and its first fifth: if the import
streams, the two peaks are about the same.

Results: BENCHMARKS-import.md and bench-results/import.json.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/tally_bench_import"


def datasets_dir() -> Path:
    return Path(os.environ.get("TALLY_DATASETS_DIR", ROOT.parent / "shared" / "datasets"))


# --- the input file -------------------------------------------------------------------------


def write_input(target: Path, rows: int) -> dict:
    source = datasets_dir() / "sst2_train.tsv"
    if not source.exists():
        sys.exit(f"{source} is missing: put the shared datasets beside the checkout or set TALLY_DATASETS_DIR")
    written = variant = 0
    with target.open("w", encoding="utf-8", newline="") as out:
        out.write("sentence\tlabel\n")
        while written < rows:
            with source.open(encoding="utf-8", newline="") as f:
                next(f)  # header
                for line in f:
                    if written >= rows:
                        break
                    sentence, label = line.rstrip("\n").rsplit("\t", 1)
                    if variant:
                        sentence = f"{sentence.rstrip()} (variant {variant})"
                    out.write(f"{sentence}\t{label}\n")
                    written += 1
            variant += 1
    return {"rows": written, "bytes": target.stat().st_size, "source": "sst2_train.tsv", "passes": variant}


def head(source: Path, target: Path, rows: int) -> None:
    with source.open("rb") as f, target.open("wb") as out:
        for i, line in enumerate(f):
            if i > rows:
                break
            out.write(line)


# --- the child: one backend -------------------------------------------------------------------


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def recreate_postgres(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    if "bench" not in name:
        sys.exit(f"Refusing to drop {name!r}: the benchmark database's name must contain 'bench'")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def child(args) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    os.environ["DATABASE_URL"] = args.database_url
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import tracemalloc

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from annotation import services
    from annotation.imports.formats import import_options
    from annotation.imports.jobs import import_batch_create
    from annotation.imports.runs import import_run
    from annotation.models import Example

    call_command("migrate", verbosity=0)
    admin_user = get_user_model().objects.create_user("bench-admin")
    path = Path(args.file)
    size = path.stat().st_size

    def import_once(n: int, file: Path):
        project = services.project_create(name=f"bench {n}", labels=["negative", "positive"], created_by=admin_user)
        options = import_options(
            source_name=file.name, text_column="sentence", label_column="label", label_map="0=negative,1=positive"
        )
        batch, _ = import_batch_create(project=project, created_by=None, source_name=file.name, options=options)
        started, cpu_started = time.perf_counter(), time.process_time()
        with file.open("rb") as stream:
            batch = import_run(batch=batch, stream=stream, bytes_total=file.stat().st_size)
        seconds = time.perf_counter() - started
        cpu_seconds.append(time.process_time() - cpu_started)
        if batch.status != "succeeded":
            sys.exit(f"import failed: {batch.error}")
        assert Example.objects.filter(project=project).count() == batch.rows_imported
        return batch, seconds

    rss_before = rss_kib()
    cpu_seconds: list[float] = []
    runs = []
    for n in range(args.repeat):
        batch, seconds = import_once(n, path)
        runs.append(
            {
                "seconds": round(seconds, 3),
                "client_cpu_seconds": round(cpu_seconds[-1], 3),
                "rows_per_second": round(batch.rows_read / seconds),
                "rows_read": batch.rows_read,
                "rows_imported": batch.rows_imported,
                "rows_duplicate": batch.rows_duplicate,
                "rows_skipped": batch.rows_skipped,
            }
        )
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    traced = {}
    fifth = path.with_name(path.stem + "-fifth" + path.suffix)
    head(path, fifth, runs[0]["rows_read"] // 5)
    for label, file in (("whole file", path), ("first fifth", fifth)) if args.tracemalloc else ():
        tracemalloc.start()
        tracemalloc.reset_peak()
        batch, _ = import_once(len(traced) + 100, file)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        traced[label] = {"rows": batch.rows_read, "peak_mib": round(peak / 2**20, 1)}

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()" if connection.vendor == "postgresql" else "SELECT sqlite_version()")
        server = cursor.fetchone()[0]
    median = statistics.median(r["seconds"] for r in runs)
    print(
        json.dumps(
            {
                "backend": args.backend,
                "server": server.split(" on ")[0] if connection.vendor == "postgresql" else f"SQLite {server}",
                "file_bytes": size,
                "runs": runs,
                "median_seconds": round(median, 3),
                "median_rows_per_second": round(runs[0]["rows_read"] / median),
                "median_client_cpu_seconds": round(statistics.median(r["client_cpu_seconds"] for r in runs), 3),
                "rss_before_import_mib": round(rss_before / 1024, 1),
                "peak_rss_mib": round(peak_rss / 1024, 1),
                "rss_growth_mib": round((peak_rss - rss_before) / 1024, 1),
                "tracemalloc_peak": traced,
                "chunk_rows": settings.TALLY_IMPORT_CHUNK_ROWS,
            }
        )
    )


# --- the parent: machine, input, children, report -------------------------------------------------


def machine() -> dict:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        mem = int(meminfo.read_text().split()[1]) // 1024
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "memory_mib": mem,
        "gpu": "none",
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def report(results: dict) -> str:
    m = results["machine"]
    inp = results["input"]
    lines = [
        "# Import benchmark",
        "",
        f"Measured {results['measured_at']} by `make bench-import` (bench/import_bench.py; the method is in its "
        "docstring and in docs/import.md).",
        "",
        f"Machine: {m['cores']}-core {m['arch']} ({m['cpu']}), {m['memory_mib']:,} MiB RAM, no GPU; "
        f"{m['os']}, Python {m['python']}. Load average at start: {', '.join(map(str, m['load_average_at_start']))} "
        "(above 1 per core the machine is shared and figures vary).",
        "",
        f"Input: {inp['rows']:,} rows, {inp['bytes'] / 2**20:.1f} MiB TSV: SST-2 train (67,349 rows) once as is, "
        'then again with " (variant N)" appended to each sentence, up to the row count. Gold labels 0/1 mapped '
        "to negative/positive. The whole pipeline is timed: read, decode, parse, check, hash, de-duplicate "
        "and insert, progress to Redis, commit.",
        "",
        "| database | rows | imported | duplicates | median time | rows/s (median) | runs (s) | client CPU "
        "(median) | peak RSS | RSS growth | tracemalloc peak: whole file / first fifth |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for r in results["backends"]:
        first = r["runs"][0]
        traced = r["tracemalloc_peak"]
        times = ", ".join(f"{x['seconds']:.2f}" for x in r["runs"])
        lines.append(
            f"| {r['server']} | {first['rows_read']:,} | {first['rows_imported']:,} | {first['rows_duplicate']:,} | "
            f"{r['median_seconds']:.2f} s | {r['median_rows_per_second']:,} | "
            f"{times} | {r['median_client_cpu_seconds']:.2f} s | {r['peak_rss_mib']} MiB | "
            f"{r['rss_growth_mib']} MiB | "
            + (
                f"{traced['whole file']['peak_mib']} MiB ({traced['whole file']['rows']:,} rows) / "
                f"{traced['first fifth']['peak_mib']} MiB ({traced['first fifth']['rows']:,} rows) |"
                if traced
                else "not measured (--no-tracemalloc) |"
            )
        )
    lines += [
        "",
        "Peak RSS is the whole benchmark process (Django, psycopg, the timed imports); RSS growth is how much it "
        "grew from before the first import to its peak. The tracemalloc peaks are the Python allocations during "
        "one import: about the same for the whole file and its first fifth, because the file is streamed (one "
        f"chunk of {results['backends'][0]['chunk_rows']:,} rows, the capped report and the labels in memory).",
        "",
        "PostgreSQL: COPY of each chunk into a temporary staging table, then one INSERT ... SELECT ... ON "
        "CONFLICT (project, text_hash) DO NOTHING (the duplicate probe and the insert in one statement); SQLite: "
        "one duplicate query per chunk and one prepared INSERT run over the new rows (executemany), its page "
        "cache raised to 64 MiB for the import (most of SQLite's RSS growth). PostgreSQL's figure includes its "
        "server's work (the example table's seven indexes, WAL, the three foreign keys checked per row at the "
        "commit, an fsync'ed commit) on the same two cores; *client CPU* is the importing process's own CPU time "
        "(parsing, checks, hashing, sending), the rest of the time is spent waiting on the database (and, on a "
        "shared machine, for a core).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument(
        "--no-tracemalloc",
        dest="tracemalloc",
        action="store_false",
        help="skip the two extra imports under tracemalloc (whole file, first fifth): for large --rows",
    )
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG))
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS-import.md"))
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "import.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    results = {"measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "backends": []}
    with tempfile.TemporaryDirectory(prefix="tally-import-bench-") as tmp:
        data = Path(tmp) / f"sst2_{args.rows}.tsv"
        results["input"] = write_input(data, args.rows)
        print(f"input: {results['input']['rows']:,} rows, {results['input']['bytes']:,} bytes", flush=True)
        for backend in args.backends.split(","):
            if backend == "postgres":
                url = args.database_url
                recreate_postgres(url)
            elif backend == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
            else:
                sys.exit(f"unknown backend {backend!r}")
            print(f"{backend}: importing {args.repeat} times (+2 under tracemalloc unless told not to)...", flush=True)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--backend",
                    backend,
                    "--file",
                    str(data),
                    "--database-url",
                    url,
                    "--repeat",
                    str(args.repeat),
                    *([] if args.tracemalloc else ["--no-tracemalloc"]),
                ],
                cwd=ROOT,
                check=True,
                stdout=subprocess.PIPE,
                text=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results["backends"].append(result)
            print(
                f"  {result['median_rows_per_second']:,} rows/s (median of {args.repeat}: "
                f"{result['median_seconds']} s), peak RSS {result['peak_rss_mib']} MiB",
                flush=True,
            )
            if backend == "postgres":
                recreate_postgres(url)  # leave an empty database, not 500,000 rows
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    from bench.report_files import write_keeping_notes

    write_keeping_notes(args.out, report(results))
    print(f"wrote {args.out} and {args.json}")


if __name__ == "__main__":
    main()
