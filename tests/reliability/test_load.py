"""Load: 50 simulated annotators submitting for 2 minutes against gunicorn + PostgreSQL, with
a Celery worker retraining in the background (make test-faults; `make bench-load` writes
BENCHMARKS-load.md). Everything on 127.0.0.1; the client is stdlib threads and urllib.

Each annotator claims a text, sends the page's first heartbeat, reads for 0.3-1.0 s, and
submits with an idempotency key, retrying like the page. Afterwards: zero 5xx, every
acknowledged submission stored once and paid exactly once, the ledger verifies, and the
worker was retraining while the crowd worked.

TALLY_LOAD_SECONDS (120), TALLY_LOAD_ANNOTATORS (50), TALLY_LOAD_READ_SECONDS ("0.3-1.0": how
long each text is read, drawn uniformly; people take tens of seconds, so the default is a stress
far above a real crowd's pace), TALLY_LOAD_ARRIVAL_SECONDS ("0": each annotator starts after a
random delay of up to this many seconds; 0, all at once, is a burst at the start),
TALLY_LOAD_REPORT (a Markdown file to write the figures to; bench-results/load.md always gets
them).
"""

import json
import os
import platform
import statistics
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db.models import Count
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotation.models import Annotation, Example, Label, Membership
from annotation.services import text_hash
from labor_ledger import selectors as ledger_selectors
from labor_ledger import services as ledger_services
from labor_ledger.models import LedgerEntry
from tests.factories import UserFactory, add_member, make_project
from tests.support.annotators import Annotator, run_annotators
from training import services as training_services
from training.ml.data import datasets_dir, read_sst2
from training.models import ModelVersion, TrainingRun

from .harness import (
    ROOT,
    Gunicorn,
    OwnRedis,
    Worker,
    child_pids,
    env_for,
    memory_mib,
    wait_for,
    wait_for_other_sessions_to_end,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SECONDS = float(os.environ.get("TALLY_LOAD_SECONDS", "120"))
ANNOTATORS = int(os.environ.get("TALLY_LOAD_ANNOTATORS", "50"))
ARRIVAL_SECONDS = float(os.environ.get("TALLY_LOAD_ARRIVAL_SECONDS", "0"))
_read = [float(s) for s in os.environ.get("TALLY_LOAD_READ_SECONDS", "0.3-1.0").split("-", 1)]
READ_SECONDS = (_read[0], _read[-1])  # "20-40", or "30" for exactly 30 s
EXAMPLES = 20_000
GUNICORN_WORKERS, GUNICORN_THREADS = 3, 4


def pct(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


@pytest.fixture
def procs():
    started = []
    yield started
    for proc in reversed(started):
        proc.stop()
    wait_for_other_sessions_to_end()


def test_fifty_annotators_for_two_minutes(admin_user, tmp_path, procs, settings):
    path = datasets_dir() / "sst2_train.tsv"
    if not path.exists():
        pytest.skip(f"SST-2 not found at {path}; set TALLY_DATASETS_DIR")
    project = make_project(admin=admin_user, name="Load", labels=("positive", "negative"))
    Example.objects.bulk_create(
        (Example(project=project, text=t, text_hash=text_hash(t)) for _, t in read_sst2(path, limit=EXAMPLES)),
        batch_size=5000,
        ignore_conflicts=True,
    )
    start = timezone.now() - timedelta(hours=1)
    ledger_services.pay_policy_create(
        project=project,
        created_by=admin_user,
        piece_rate=Decimal("0.05"),
        floor_hourly_rate=Decimal("12"),
        effective_from=start,
        now=start,
    )
    training_services.config_update(
        project=project, model_kind="hashed", retrain_every_n_labels=50, min_labels=20, holdout_share=0.2
    )
    label_ids = list(Label.objects.filter(project=project).values_list("id", flat=True))
    tokens = []
    for i in range(ANNOTATORS):
        user = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username=f"load-{i}"))
        tokens.append(Token.objects.create(user=user).key)

    redis = OwnRedis(tmp_path)
    procs.append(redis)
    env = env_for(
        REDIS_URL=redis.url,
        CACHE_KEY_PREFIX="security-load",
        TALLY_MODEL_STORE=tmp_path / "models",
        TALLY_TRAINING_DEVICE="cpu",
        TALLY_TRAINING_THREADS=1,
        DB_CONN_MAX_AGE=60,  # persistent connections, as a deployment behind gunicorn threads would run
    )
    worker = Worker("load", tmp_path, env)
    procs.append(worker)
    web = Gunicorn(tmp_path, env, workers=GUNICORN_WORKERS, threads=GUNICORN_THREADS)
    procs.append(web)

    stop = threading.Event()
    crowd = [
        Annotator(
            base_url=web.url,
            token=token,
            slug=project.slug,
            label_ids=label_ids,
            stop=stop,
            pause=READ_SECONDS,
            arrive_within=ARRIVAL_SECONDS,
            seed=i,
            heartbeat=True,
        )
        for i, token in enumerate(tokens)
    ]
    began = timezone.now()
    load_before = os.getloadavg()[0]
    elapsed = run_annotators(crowd, SECONDS)
    load_after = os.getloadavg()[0]
    web_memory = [memory_mib(pid) for pid in child_pids(web.proc.pid)]
    worker_memory = memory_mib(worker.proc.pid)
    ended = timezone.now()
    versions_during = ModelVersion.objects.filter(project=project, created_at__lte=ended).count()
    runs_started_during = TrainingRun.objects.filter(project=project, started_at__lte=ended).count()

    # --- no server error, nothing lost, nothing paid twice ---
    statuses, kinds, acknowledged = {}, {}, {}
    for a in crowd:
        for code, n in a.tally.statuses.items():
            statuses[code] = statuses.get(code, 0) + n
        for kind, values in a.tally.by_kind.items():
            kinds.setdefault(kind, []).extend(values)
        acknowledged.update(a.tally.accepted)
        assert not a.tally.gave_up, a.tally.gave_up
    assert not [code for code in statuses if code >= 500 or code == 0], statuses
    stored = dict(Annotation.objects.filter(project=project).values_list("idempotency_key", "id"))
    assert stored == acknowledged
    pay = dict(
        LedgerEntry.objects.filter(project=project, kind=LedgerEntry.Kind.PIECE_PAY)
        .values_list("annotation_id")
        .annotate(n=Count("id"))
    )
    assert pay == {annotation_id: 1 for annotation_id in stored.values()}
    verified = ledger_selectors.ledger_verify(project=project)
    assert verified.ok, verified.problems
    # the worker retrained while the crowd worked, and finishes what is queued
    wait_for(
        lambda: not TrainingRun.objects.filter(project=project, status__in=["queued", "running"]).exists(),
        180,
        what="the training queue to drain",
    )
    runs = TrainingRun.objects.filter(project=project)
    assert runs_started_during >= 1 and all(r.status == "succeeded" for r in runs), [
        (r.pk, r.status, r.error) for r in runs
    ]

    # --- the figures ---
    everything = [v for values in kinds.values() for v in values]
    figures = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "annotators": ANNOTATORS,
        "seconds": round(elapsed, 1),
        "examples_in_pool": Example.objects.filter(project=project).count(),
        "submissions": len(acknowledged),
        "submissions_per_s": round(len(acknowledged) / elapsed, 1),
        "requests": len(everything),
        "requests_per_s": round(len(everything) / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "retries": sum(a.tally.retries for a in crowd),
        "latency_ms": {
            kind: {
                "p50": round(1000 * pct(values, 0.5), 1),
                "p95": round(1000 * pct(values, 0.95), 1),
                "p99": round(1000 * pct(values, 0.99), 1),
                "mean": round(1000 * statistics.fmean(values), 1),
            }
            for kind, values in sorted({**kinds, "all": everything}.items())
        },
        "training_runs": runs.count(),
        "versions": ModelVersion.objects.filter(project=project).count(),
        "versions_during_load": versions_during,
        "runs_started_during_load": runs_started_during,
        "ledger_entries": verified.entries,
        "gunicorn": f"{GUNICORN_WORKERS} workers x {GUNICORN_THREADS} threads",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} (shared with other jobs)",
        "started": began.isoformat(),
        "load_average_1min": [round(load_before, 1), round(load_after, 1)],
        "web_rss_mib": [m["rss"] for m in web_memory],
        "worker_peak_rss_mib": worker_memory["peak"],
    }
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "load.json").write_text(json.dumps(figures, indent=2))
    report = render(figures)
    (out / "load.md").write_text(report)
    if os.environ.get("TALLY_LOAD_REPORT"):
        Path(os.environ["TALLY_LOAD_REPORT"]).write_text(report)
    print(report)


def render(f) -> str:
    rows = "\n".join(
        f"| {kind} | {v['p50']} | {v['p95']} | {v['p99']} | {v['mean']} |" for kind, v in f["latency_ms"].items()
    )
    web_rss = ", ".join(f"{m} MiB" for m in f["web_rss_mib"])
    return f"""# Load test: {f["annotators"]} simulated annotators for {f["seconds"]:.0f} s

`make bench-load` (tests/reliability/test_load.py, also run by `make test-faults`), {f["date"]}.

Machine: {f["machine"]}: the client threads, gunicorn ({f["gunicorn"]}), PostgreSQL, Redis
and the Celery worker all share these cores (1-minute load average {f["load_average_1min"][0]} before
the run, {f["load_average_1min"][1]} at its end, the run's own processes included).

Each simulated annotator (stdlib threads + urllib, 127.0.0.1 only) arrives within the first
{ARRIVAL_SECONDS:g} s, then claims the next text,
sends the page's first heartbeat, reads for {READ_SECONDS[0]}-{READ_SECONDS[1]} s and submits with an idempotency key,
retrying like the labeling page. The worker retrains a hashed model every 50 labels on a
pool of {f["examples_in_pool"]:,} SST-2 sentences and rewrites the queue's priorities.

gunicorn and the worker keep their database connections (DB_CONN_MAX_AGE=60).

| | |
|---|---|
| submissions acknowledged | {f["submissions"]:,} ({f["submissions_per_s"]}/s) |
| requests | {f["requests"]:,} ({f["requests_per_s"]}/s) |
| answers by status | {f["statuses"]} |
| 5xx / no answer | {sum(v for k, v in f["statuses"].items() if int(k) >= 500 or int(k) == 0)} |
| client retries | {f["retries"]} |
| runs started / versions registered during the load | {f["runs_started_during_load"]} / {f["versions_during_load"]} |
| training runs / versions in all (queue drained afterwards) | {f["training_runs"]} / {f["versions"]} |
| ledger entries, verified afterwards | {f["ledger_entries"]:,}, ok |
| every submission paid exactly once | yes |
| memory of each gunicorn worker process after the run (RSS) | {web_rss} (target: under 200 MiB each) |
| the Celery worker's peak memory (VmHWM) | {f["worker_peak_rss_mib"]} MiB |

Latency (ms, as the client saw it):

| request | p50 | p95 | p99 | mean |
|---|---|---|---|---|
{rows}
"""
