"""The annotation hot path, in-process, statement by statement (issue 18 item 1).

One annotator works through texts: claim (POST .../queue/next/), one heartbeat (the first,
which marks the text shown), a second heartbeat (which credits active time), and a submit
(POST /api/attempts/<id>/submit/), with a pay policy in force so the ledger writes time and
piece pay. Each request goes through Django's test client with API-token auth, like the peers
benchmark's clients, against PostgreSQL in a throwaway test database (created and dropped).

Reported per request (medians over the measured rounds): SQL statements, time spent inside the
database driver's execute (round trip + PostgreSQL), and the whole in-process request time
("server time": URL routing, auth, DRF, services, ORM, driver). The statements of the last
round are listed one by one with their times. Also the same loop called at the service layer
(claim_next, attempt_heartbeat, annotation_submit: no auth, no DRF) — the hot path proper.

Usage:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tally_bench_hot REDIS_URL=redis://127.0.0.1:6379/15 \
        .venv/bin/python bench/hot_path_bench.py [--rounds 60] [--warmup 10] [--out bench-results/hot_path.json]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")


class StatementLog:
    """A connection.execute_wrapper that times every statement the ORM or raw SQL sends."""

    def __init__(self):
        self.rows: list[tuple[str, float]] = []

    def __call__(self, execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.rows.append((sql, (time.perf_counter() - start) * 1000))


def _short(sql: str) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= 150 else sql[:147] + "..."


def _measure(fn, log: StatementLog) -> dict:
    log.rows.clear()
    start = time.perf_counter()
    fn()
    total = (time.perf_counter() - start) * 1000
    return {"ms": total, "statements": len(log.rows), "db_ms": sum(ms for _, ms in log.rows), "rows": list(log.rows)}


def _summary(samples: list[dict]) -> dict:
    return {
        "statements": statistics.median(s["statements"] for s in samples),
        "ms_p50": round(statistics.median(s["ms"] for s in samples), 2),
        "db_ms_p50": round(statistics.median(s["db_ms"] for s in samples), 2),
        "last": [(_short(sql), round(ms, 3)) for sql, ms in samples[-1]["rows"]],
    }


def bench(rounds: int, warmup: int) -> dict:
    from django.db import connection
    from django.test import Client
    from rest_framework.authtoken.models import Token

    from annotation import services
    from labor_ledger import services as ledger_services
    from tests.factories import UserFactory, add_examples, add_member, make_project

    n = rounds + warmup
    admin = UserFactory(username="hot-admin")
    project = make_project(admin=admin, name="Hot path")
    add_examples(project, [f"hot path text {i}" for i in range(2 * n + 10)])
    t0 = datetime.now(UTC) - timedelta(hours=1)
    ledger_services.pay_policy_create(
        project=project,
        created_by=admin,
        effective_from=t0,
        now=t0,
        piece_rate=Decimal("0.10"),
        floor_hourly_rate=Decimal("12"),
    )
    annotator = add_member(project, user=UserFactory(username="hot-annotator"))
    token = Token.objects.create(user=annotator)
    label = project.labels.first().pk
    client = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
    log = StatementLog()
    http = {"next": [], "heartbeat_first": [], "heartbeat": [], "submit": []}
    svc = {"claim_next": [], "heartbeat_first": [], "heartbeat": [], "submit": []}

    with connection.execute_wrapper(log):
        for i in range(n):
            keep = i >= warmup
            box = {}

            def nxt(box=box):
                r = client.post(f"/api/projects/{project.slug}/queue/next/", {}, content_type="application/json")
                assert r.status_code == 200, r.content
                box["id"] = r.json()["id"]

            def hb(box=box):
                r = client.post(f"/api/attempts/{box['id']}/heartbeat/")
                assert r.status_code == 200, r.content

            def sub(box=box):
                r = client.post(
                    f"/api/attempts/{box['id']}/submit/", {"labels": [label]}, content_type="application/json"
                )
                assert r.status_code == 201, r.content

            for name, fn in (("next", nxt), ("heartbeat_first", hb), ("heartbeat", hb), ("submit", sub)):
                sample = _measure(fn, log)
                if keep:
                    http[name].append(sample)

        for i in range(n):
            keep = i >= warmup
            box = {}

            def claim(box=box):
                box["a"] = services.claim_next(project=project, annotator=annotator)

            def beat(box=box):
                services.attempt_heartbeat(attempt_id=box["a"].pk, annotator=annotator)

            def submit(box=box):
                services.annotation_submit(attempt_id=box["a"].pk, annotator=annotator, label_ids=[label])

            for name, fn in (("claim_next", claim), ("heartbeat_first", beat), ("heartbeat", beat), ("submit", submit)):
                sample = _measure(fn, log)
                if keep:
                    svc[name].append(sample)

    def totals(parts: dict, names: list[str]) -> dict:
        return {
            "statements": sum(parts[k]["statements"] for k in names),
            "ms_p50": round(sum(parts[k]["ms_p50"] for k in names), 2),
            "db_ms_p50": round(sum(parts[k]["db_ms_p50"] for k in names), 2),
        }

    http_s = {k: _summary(v) for k, v in http.items()}
    svc_s = {k: _summary(v) for k, v in svc.items()}
    return {
        "http": http_s,
        "services": svc_s,
        # the budget's loop: one claim, one heartbeat (the first: it marks the text shown), one submit
        "http_total": totals(http_s, ["next", "heartbeat_first", "submit"]),
        "services_total": totals(svc_s, ["claim_next", "heartbeat_first", "submit"]),
    }


def _print(results: dict) -> None:
    for layer in ("http", "services"):
        print(f"\n== {layer} ==")
        for name, s in results[layer].items():
            print(f"{name}: {s['statements']} statements, {s['ms_p50']} ms in-process, {s['db_ms_p50']} ms in execute")
            for sql, ms in s["last"]:
                print(f"    {ms:7.3f} ms  {sql}")
        t = results[f"{layer}_total"]
        print(
            f"{layer} claim + heartbeat + submit: {t['statements']} statements, {t['ms_p50']} ms in-process, "
            f"{t['db_ms_p50']} ms in execute"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "hot_path.json"))
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.vendor != "postgresql":
        sys.exit("The hot-path benchmark runs on PostgreSQL: set DATABASE_URL.")
    settings.ALLOWED_HOSTS = ["*"]
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": args.rounds,
    }
    old = setup_databases(verbosity=0, interactive=False)
    try:
        results["database"] = "PostgreSQL " + ".".join(str(v) for v in divmod(connection.pg_version, 10000))
        results.update(bench(args.rounds, args.warmup))
    finally:
        teardown_databases(old, verbosity=0)
    _print(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
