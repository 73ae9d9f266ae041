"""`make bench-peers`: the same workload against Label Studio and Tally, alternating, in one run.

    python -m bench.peers.run [--texts 7600] [--submits 2000] [--clients 8] [--reps 3] ...

Writes the raw measurements to bench-results/peers-<timestamp>.json and the table to
BENCHMARKS-peers.md. Every server is started on 127.0.0.1 only and stopped at the end,
whatever happens (processes.install_cleanup). See docs/benchmarks-peers.md.
"""

import argparse
import csv
import datetime as dt
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from pathlib import Path

from . import report
from .processes import install_cleanup, stop_all
from .systems import ROOT, LabelStudio, TallyPostgres, TallySqlite, remove_tree
from .workload import Limits, run_once

AG_NEWS_CLASSES = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}
ALL_SYSTEMS = ["ls", "tally-sqlite", "tally-pg"]


def log(message: str) -> None:
    print(f"{dt.datetime.now(dt.UTC).strftime('%H:%M:%S')} {message}", flush=True)


def datasets_dir() -> Path:
    return Path(os.environ.get("TALLY_DATASETS_DIR") or ROOT.parent / "shared" / "datasets")


def write_dataset(source: Path, target: Path, limit: int) -> int:
    """AG News (no header: class, title, description) -> a CSV both systems read the same way:
    header `text,label`, text = title + " " + description, label = the class name. The text is
    passed through unchanged (the file's backslash escapes included) so both get the same bytes."""
    written = 0
    with source.open(newline="", encoding="utf-8") as src, target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "label"])
        for row in csv.reader(src):
            if written >= limit:
                break
            cls, title, description = row
            writer.writerow([f"{title} {description}", AG_NEWS_CLASSES[cls]])
            written += 1
    return written


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": mem_kib / 1024 / 1024,
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=7600, help="rows of AG News to import (default: all 7,600)")
    parser.add_argument("--submits", type=int, default=2000, help="annotations per annotate phase")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the second annotate phase")
    parser.add_argument("--next-fetches", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3, help="repetitions; figures are medians")
    parser.add_argument(
        "--phase-seconds", type=float, default=30.0, help="time cap of each annotate / fetch-next phase"
    )
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS), help=f"comma-separated subset of {ALL_SYSTEMS}")
    parser.add_argument("--ls-venv", type=Path, default=ROOT / "build" / "ls-venv")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/tally_bench_peers"),
        help="a database the run creates and drops (never an existing one you need)",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"))
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--report", type=Path, default=ROOT / "BENCHMARKS-peers.md")
    parser.add_argument("--no-report", action="store_true", help="keep BENCHMARKS-peers.md as it is (dev runs)")
    parser.add_argument("--note", default="", help="a line printed at the top of the table (e.g. why it is noisy)")
    parser.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep server logs and databases (the PostgreSQL one too) for debugging",
    )
    args = parser.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(ALL_SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {ALL_SYSTEMS}")
    for name in ("texts", "submits", "clients", "next_fetches", "reps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    install_cleanup()
    run_id = secrets.token_hex(4)
    started = dt.datetime.now(dt.UTC)
    workdir = Path(tempfile.mkdtemp(prefix="tally-bench-peers-"))
    limits = Limits(
        submits=args.submits, clients=args.clients, next_fetches=args.next_fetches, phase_seconds=args.phase_seconds
    )
    source = datasets_dir() / "ag_news_test.csv"
    if not source.exists():
        print(f"error: {source} is missing (set TALLY_DATASETS_DIR)", file=sys.stderr)
        return 2
    dataset = workdir / f"ag_news_{args.texts}.csv"
    texts = write_dataset(source, dataset, args.texts)
    annotators = args.clients + 2  # one for the 1-client phase, N, one for the fetch-next phase

    systems = []
    for key in args.systems:
        if key == "ls":
            systems.append(LabelStudio(workdir, annotators, venv=args.ls_venv.resolve()))
        elif key == "tally-sqlite":
            systems.append(
                TallySqlite(workdir, annotators, redis_url=args.redis_url, run_id=run_id, python=sys.executable)
            )
        else:
            systems.append(
                TallyPostgres(
                    workdir,
                    annotators,
                    redis_url=args.redis_url,
                    run_id=run_id,
                    python=sys.executable,
                    pg_url=args.pg_url,
                )
            )

    data = {
        "meta": {
            **machine(),
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "run_id": run_id,
            "versions": {},
            "note": args.note,
        },
        "config": {
            "texts": texts,
            "dataset": "../shared/datasets/ag_news_test.csv",
            "submits": args.submits,
            "clients": args.clients,
            "next_fetches": args.next_fetches,
            "reps": args.reps,
            "phase_seconds": args.phase_seconds,
            "systems": args.systems,
        },
        "prepare": {},
        "runs": [],
    }
    load_averages = []
    exit_code = 0
    try:
        for system in systems:
            log(f"prepare {system.title}")
            data["prepare"][system.key] = system.prepare()
            data["meta"]["versions"].update(system.versions())
        for rep in range(args.reps):
            order = systems if rep % 2 == 0 else list(reversed(systems))
            load_averages.append(os.getloadavg()[0])
            log(f"repetition {rep + 1}/{args.reps} (load average {load_averages[-1]:.2f})")
            for system in order:
                start = time.monotonic()
                system.start()
                try:
                    result = run_once(system, dataset, limits, name=f"AG News bench {run_id} rep {rep + 1}", log=log)
                    result["memory"] = system.memory()
                    if hasattr(system, "worker_memory"):
                        result["worker_memory"] = system.worker_memory()
                finally:
                    system.stop()
                result.update(rep=rep, load_average_at_start=load_averages[-1], seconds=time.monotonic() - start)
                data["runs"].append(result)
    except BaseException as exc:
        exit_code = 1
        data["aborted"] = f"{type(exc).__name__}: {exc}"
        log(f"ABORTED: {data['aborted']}")
        if not isinstance(exc, Exception):
            exit_code = 130
    finally:
        stop_all()
        for system in systems:
            system.cleanup(keep_data=args.keep_workdir)
        if not args.keep_workdir:
            remove_tree(workdir)
        else:
            log(f"work directory kept: {workdir}")

    data["meta"]["load_averages"] = load_averages
    data["meta"]["finished"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    raw = args.results_dir / f"peers-{started.strftime('%Y%m%dT%H%M%S')}-{run_id}.json"
    data["meta"]["raw_file"] = str(raw.relative_to(ROOT)) if raw.is_relative_to(ROOT) else str(raw)
    raw.write_text(json.dumps(data, indent=2))
    log(f"raw results: {raw}")
    if data["runs"] and not args.no_report and exit_code == 0:
        args.report.write_text(report.render(data))
        log(f"table: {args.report}")
    elif data["runs"]:
        print(report.table(data))
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
