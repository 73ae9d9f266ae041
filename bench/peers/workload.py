"""The workload, identical for every system: import, annotate (1 client, then N), fetch-next,
export, memory. Every loop is bounded twice: by a count and by a time cap."""

import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .httpclient import Http
from .stats import latency_summary, rate
from .systems import Project, System, count_records

MAX_ERRORS_PER_PHASE = 50


@dataclass
class Limits:
    submits: int = 2000
    clients: int = 8
    next_fetches: int = 100
    phase_seconds: float = 60.0


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def annotate(system: System, project: Project, https: list[Http], total: int, phase_seconds: float) -> dict:
    """`len(https)` annotators in threads, each looping next task -> submit, until `total`
    annotations are in, the time cap passes or the queue runs dry. Throughput counts finished
    annotations over the phase's wall time (both requests of each loop included); latency is
    reported for the submit request and, separately, for the next-task request."""
    lock = threading.Lock()
    state = {"issued": 0, "done": 0, "errors": 0, "stopped_by": "count"}
    submit_s: list[float] = []
    next_s: list[float] = []
    error_samples: list[str] = []
    barrier = threading.Barrier(len(https) + 1)
    deadline = [0.0]
    finish_times: list[float] = []

    def stop(reason: str) -> None:
        with lock:
            if state["stopped_by"] == "count":
                state["stopped_by"] = reason

    def client(http: Http) -> None:
        barrier.wait()
        try:
            while True:
                with lock:
                    if state["issued"] >= total or state["errors"] >= MAX_ERRORS_PER_PHASE:
                        break
                    if time.perf_counter() >= deadline[0]:
                        state["stopped_by"] = "time cap" if state["stopped_by"] == "count" else state["stopped_by"]
                        break
                    state["issued"] += 1
                try:
                    task, seconds = system.next_task(http, project)
                    next_s.append(seconds)
                    if task is None:
                        stop("queue empty")
                        with lock:
                            state["issued"] -= 1
                        break
                    submit_s.append(system.submit(http, project, task))
                    with lock:
                        state["done"] += 1
                except Exception as exc:  # noqa: BLE001 -- counted and reported, never hidden
                    with lock:
                        state["errors"] += 1
                        state["issued"] -= 1
                        if len(error_samples) < 5:
                            error_samples.append(_error_text(exc))
        finally:
            finish_times.append(time.perf_counter())
            http.close()

    threads = [threading.Thread(target=client, args=(http,), daemon=True) for http in https]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    deadline[0] = start + phase_seconds
    barrier.wait()
    for thread in threads:
        thread.join(timeout=phase_seconds + 180)
    wall = max(finish_times, default=time.perf_counter()) - start
    if state["errors"] >= MAX_ERRORS_PER_PHASE:
        state["stopped_by"] = "too many errors"
    return {
        "clients": len(https),
        "requested": total,
        "completed": state["done"],
        "errors": state["errors"],
        "error_samples": error_samples,
        "stopped_by": state["stopped_by"],
        "wall_seconds": wall,
        "annotations_per_second": rate(state["done"], wall),
        "submit_latency": latency_summary(submit_s),
        "next_latency_in_loop": latency_summary(next_s),
    }


def fetch_next(system: System, project: Project, http: Http, count: int, phase_seconds: float) -> dict:
    """`count` fresh hand-outs to one annotator: each next-task call is timed, then the task is
    skipped (untimed) so the following call must pick a new one rather than re-offer a held claim."""
    seconds: list[float] = []
    errors, samples = 0, []
    start = time.perf_counter()
    stopped_by = "count"
    for _ in range(count):
        if time.perf_counter() - start > phase_seconds:
            stopped_by = "time cap"
            break
        try:
            task, elapsed = system.next_task(http, project)
            if task is None:
                stopped_by = "queue empty"
                break
            seconds.append(elapsed)
            system.skip(http, project, task)
        except Exception as exc:  # noqa: BLE001
            errors += 1
            if len(samples) < 5:
                samples.append(_error_text(exc))
            if errors >= MAX_ERRORS_PER_PHASE:
                stopped_by = "too many errors"
                break
    http.close()
    return {
        "requested": count,
        "errors": errors,
        "error_samples": samples,
        "stopped_by": stopped_by,
        "latency": latency_summary(seconds),
    }


def export(system: System, project: Project, kind: str) -> dict:
    http = system.admin_http()
    try:
        body, seconds = system.export(http, project, kind)
        return {"seconds": seconds, "bytes": len(body), "records": count_records(body, kind)}
    except Exception as exc:  # noqa: BLE001
        return {"seconds": None, "error": _error_text(exc)}
    finally:
        http.close()


def run_once(system: System, dataset: Path, limits: Limits, *, name: str, log=print) -> dict:
    """One repetition on one (already started) system, on a fresh project."""
    result: dict = {"system": system.key}
    project = system.new_project(name)
    log(f"  [{system.key}] import {dataset.name}")
    try:
        result["import"] = system.import_file(project, dataset)
    except Exception as exc:  # noqa: BLE001
        result["import"] = {"measured": False, "error": _error_text(exc), "trace": traceback.format_exc()[-2000:]}
        log(f"  [{system.key}] import FAILED: {_error_text(exc)}")
        return result
    imp = result["import"]
    if imp.get("measured"):
        imp["tasks_per_second"] = rate(imp["tasks"] or 0, imp["seconds"])
    log(f"  [{system.key}] {imp.get('tasks')} tasks, {imp.get('seconds') or 0:.2f} s; annotate with 1 client")

    result["annotate_1"] = annotate(system, project, [system.annotator_http(0)], limits.submits, limits.phase_seconds)
    log(f"  [{system.key}] {_phase_line(result['annotate_1'])}; annotate with {limits.clients} clients")
    https = [system.annotator_http(1 + i) for i in range(limits.clients)]
    result["annotate_n"] = annotate(system, project, https, limits.submits, limits.phase_seconds)
    log(f"  [{system.key}] {_phase_line(result['annotate_n'])}; fetch next x{limits.next_fetches}")
    result["fetch_next"] = fetch_next(
        system, project, system.annotator_http(1 + limits.clients), limits.next_fetches, limits.phase_seconds
    )
    result["export_csv"] = export(system, project, "csv")
    result["export_json"] = export(system, project, "json")
    log(
        f"  [{system.key}] next p50 {result['fetch_next']['latency']['p50_ms'] or 0:.1f} ms; "
        f"export csv {result['export_csv'].get('seconds') or 0:.2f} s "
        f"json {result['export_json'].get('seconds') or 0:.2f} s"
    )
    return result


def _phase_line(phase: dict) -> str:
    return (
        f"{phase['completed']}/{phase['requested']} in {phase['wall_seconds']:.1f} s "
        f"({phase['annotations_per_second'] or 0:.1f}/s, submit p95 {phase['submit_latency']['p95_ms'] or 0:.0f} ms, "
        f"{phase['errors']} errors, stopped by {phase['stopped_by']})"
    )
