"""Turn the raw runs (bench-results/peers-*.json) into the BENCHMARKS-peers.md table.

Usage: python -m bench.peers.report bench-results/peers-XXXX.json [--output BENCHMARKS-peers.md]
(run.py calls it at the end of every run).
"""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from .stats import HIGHER_IS_BETTER, LOWER_IS_BETTER, median, ratio, speedup, tally_wins

REFERENCE = "ls"
TALLY_SYSTEMS = ["tally-sqlite", "tally-pg"]
TITLES = {
    "ls": "Label Studio",
    "tally-sqlite": "Tally, SQLite",
    "tally-pg": "Tally, PostgreSQL",
}


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    unit: str
    better: str
    path: tuple

    def value(self, run: dict):
        node = run
        for step in self.path:
            if not isinstance(node, dict) or node.get(step) is None:
                return None
            node = node[step]
        return node


def figures(clients: int) -> list[Figure]:
    lower, higher = LOWER_IS_BETTER, HIGHER_IS_BETTER
    return [
        Figure("import_rate", "Import: tasks per second", "tasks/s", higher, ("import", "tasks_per_second")),
        Figure("import_seconds", "Import: wall time", "s", lower, ("import", "seconds")),
        Figure(
            "annotate_1_rate",
            "Annotate, 1 client: annotations per second",
            "/s",
            higher,
            ("annotate_1", "annotations_per_second"),
        ),
        Figure(
            "submit_1_p50", "Submit latency, 1 client: p50", "ms", lower, ("annotate_1", "submit_latency", "p50_ms")
        ),
        Figure(
            "submit_1_p95", "Submit latency, 1 client: p95", "ms", lower, ("annotate_1", "submit_latency", "p95_ms")
        ),
        Figure(
            "submit_1_p99", "Submit latency, 1 client: p99", "ms", lower, ("annotate_1", "submit_latency", "p99_ms")
        ),
        Figure(
            "annotate_n_rate",
            f"Annotate, {clients} clients: annotations per second",
            "/s",
            higher,
            ("annotate_n", "annotations_per_second"),
        ),
        Figure(
            "submit_n_p50",
            f"Submit latency, {clients} clients: p50",
            "ms",
            lower,
            ("annotate_n", "submit_latency", "p50_ms"),
        ),
        Figure(
            "submit_n_p95",
            f"Submit latency, {clients} clients: p95",
            "ms",
            lower,
            ("annotate_n", "submit_latency", "p95_ms"),
        ),
        Figure(
            "submit_n_p99",
            f"Submit latency, {clients} clients: p99",
            "ms",
            lower,
            ("annotate_n", "submit_latency", "p99_ms"),
        ),
        Figure("next_p50", "Next task (fresh hand-out): p50", "ms", lower, ("fetch_next", "latency", "p50_ms")),
        Figure("next_p95", "Next task (fresh hand-out): p95", "ms", lower, ("fetch_next", "latency", "p95_ms")),
        Figure("next_p99", "Next task (fresh hand-out): p99", "ms", lower, ("fetch_next", "latency", "p99_ms")),
        Figure("export_csv", "Export all annotations, CSV", "s", lower, ("export_csv", "seconds")),
        Figure("export_json", "Export all annotations, JSON", "s", lower, ("export_json", "seconds")),
        Figure("rss", "Server memory afterwards: RSS", "MiB", lower, ("memory", "rss_mib")),
        Figure("pss", "Server memory afterwards: PSS", "MiB", lower, ("memory", "pss_mib")),
    ]


def medians(data: dict) -> dict:
    """{system: {figure key: median over repetitions}} plus how many repetitions measured it."""
    out: dict = {}
    for figure in figures(data["config"]["clients"]):
        for system in data["config"]["systems"]:
            values = [figure.value(run) for run in data["runs"] if run["system"] == system]
            out.setdefault(system, {})[figure.key] = median(values)
            out[system][figure.key + "_n"] = sum(v is not None for v in values)
    return out


def _fmt(value, unit: str) -> str:
    if value is None:
        return "not measured"
    if unit in ("ms",):
        return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def _fmt_ratio(value, better: str) -> str:
    if value is None:
        return "n/a"
    wins = tally_wins(value, better)
    factor = speedup(value, better)
    verdict = f"Tally {factor:.1f}x better" if wins else f"**Tally {1 / factor:.1f}x worse**"
    if factor is not None and 0.95 <= factor <= 1.05:
        verdict = "about even"
    return f"{value:.3g} ({verdict})"


def table(data: dict) -> str:
    systems = [s for s in data["config"]["systems"]]
    med = medians(data)
    tallies = [s for s in TALLY_SYSTEMS if s in systems]
    header = ["Figure (median of repetitions)"]
    if REFERENCE in systems:
        header.append(TITLES[REFERENCE])
    for system in tallies:
        header.append(TITLES[system])
        if REFERENCE in systems:
            header.append(f"{TITLES[system]} / LS")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for figure in figures(data["config"]["clients"]):
        row = [figure.title]
        ls_value = med.get(REFERENCE, {}).get(figure.key)
        if REFERENCE in systems:
            row.append(_fmt(ls_value, figure.unit))
        for system in tallies:
            value = med[system][figure.key]
            row.append(_fmt(value, figure.unit))
            if REFERENCE in systems:
                row.append(_fmt_ratio(ratio(value, ls_value), figure.better))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def targets(data: dict) -> list[str]:
    """The issue's targets, checked against the medians: met or missed, per Tally setup."""
    med = medians(data)
    ls = med.get(REFERENCE)
    out = []
    if ls is None:
        return ["No Label Studio run: the ratio targets cannot be checked."]
    for system in TALLY_SYSTEMS:
        if system not in med:
            continue
        tally = med[system]
        checks = []
        import_ratio = ratio(tally["import_rate"], ls["import_rate"])
        checks.append(
            ("import rate >= 2x Label Studio's", import_ratio, import_ratio is not None and import_ratio >= 2)
        )
        for phase, label in (
            ("annotate_1_rate", "1 client"),
            ("annotate_n_rate", f"{data['config']['clients']} clients"),
        ):
            r = ratio(tally[phase], ls[phase])
            checks.append((f"annotation throughput, {label} >= 10x Label Studio's", r, r is not None and r >= 10))
        p95 = tally["submit_n_p95"]
        checks.append((f"submit p95 at {data['config']['clients']} clients < 50 ms", p95, p95 is not None and p95 < 50))
        for text, value, met in checks:
            shown = "not measured" if value is None else (f"{value:.1f} ms" if "ms" in text else f"{value:.1f}x")
            out.append(f"- {TITLES[system]}: {text}: {shown}: **{'met' if met else 'MISSED'}**")
    return out


def _short_error(sample: str) -> str:
    """'HttpError: GET /x answered 500: b"<html>..."' -> 'GET /x answered 500' (the body is in the raw JSON)."""
    head, sep, _ = sample.partition(": b")
    return head.removeprefix("HttpError: ") if sep else sample[:160]


def notes(data: dict) -> list[str]:
    """Facts a reader needs to trust the medians: caps hit, errors, what was not measured."""
    out = []
    for run in data["runs"]:
        where = f"{TITLES.get(run['system'], run['system'])}, repetition {run['rep'] + 1}"
        imp = run.get("import", {})
        if not imp.get("measured"):
            out.append(f"- {where}: import not measured: {imp.get('reason') or imp.get('error')}")
        for phase in ("annotate_1", "annotate_n", "fetch_next"):
            result = run.get(phase)
            if not result:
                continue
            if result.get("stopped_by") not in ("count", None):
                done = result.get("completed", result.get("latency", {}).get("n"))
                out.append(
                    f"- {where}: {phase} stopped by {result['stopped_by']} after {done} of {result['requested']}"
                )
            if result.get("errors"):
                first = _short_error(result["error_samples"][0]) if result.get("error_samples") else "?"
                out.append(f"- {where}: {phase}: {result['errors']} failed requests, e.g. {first}")
        for kind in ("export_csv", "export_json"):
            if run.get(kind, {}).get("error"):
                out.append(f"- {where}: {kind} failed: {run[kind]['error']}")
    return out or ["- Every phase ran to its count, without a failed request."]


def render(data: dict) -> str:
    meta, config = data["meta"], data["config"]
    versions = "; ".join(f"{k} {v}" for k, v in sorted(meta.get("versions", {}).items()))
    loads = ", ".join(f"{x:.2f}" for x in meta.get("load_averages", []))
    note = f"> **Note:** {meta['note']}\n\n" if meta.get("note") else ""
    return f"""# Tally and Label Studio, side by side

{note}Generated by `make bench-peers` (bench/peers/; method and caveats in docs/benchmarks-peers.md)
on {meta["date"]}. Raw data: `{meta.get("raw_file", "bench-results/")}`.

- Machine: {meta["cpu_model"]}, {meta["cores"]} cores, {meta["memory_gib"]:.0f} GiB RAM, {meta["kernel"]}; no GPU used.
- 1-minute load average at each repetition's start: {loads or "n/a"}
  (other work on the machine makes timings noisy when it is above 1).
- Versions: {versions}.
- Workload per repetition and system, on a fresh project: import {config["texts"]:,} texts of
  `{config["dataset"]}`; annotate up to {config["submits"]:,} texts with 1 client, then up to
  {config["submits"]:,} with {config["clients"]} concurrent clients (each phase capped at
  {config["phase_seconds"]:.0f} s); {config["next_fetches"]} next-task fetches; export CSV and JSON;
  server memory. {config["reps"]} repetitions, systems alternating; every figure is the median.
- Ratios are Tally / Label Studio. For rates higher is better; for times, latencies and memory lower is better.

{table(data)}

## Targets (issue 6)

{chr(10).join(targets(data))}

What limits the missed ones and what would fix them: docs/benchmarks-peers.md, "What limits
Tally, and what would fix it" (about 34 ms of server time per next task and submit, 14 SQL
statements with the ledger, two thirds of it Python: Django building and compiling each
statement's SQL on every call, model instances, DRF; and 8 clients queueing on 2 shared cores).

## Run notes

{chr(10).join(notes(data))}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw", type=Path)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    text = render(json.loads(args.raw.read_text()))
    if args.output:
        args.output.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
