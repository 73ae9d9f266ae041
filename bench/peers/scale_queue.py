"""How the next-example hand-out scales with the pool (one slice of issue 6's `bench-scale`).

    python -m bench.peers.scale_queue [--sizes 10000,100000,1000000] [--fetches 10]

On PostgreSQL (a database the run creates and drops, BENCH_PG_URL): for each size, one project
with that many generated examples (bulk COPY, timed separately: it is not Tally's import API),
then `annotation.services.claim_next` for fresh annotators, each hand-out followed by a skip,
timed in-process (no HTTP), under a statement timeout so a size that breaks ends the loop
instead of the run. Also the admin example list (first page and a page in the middle of the
pool, PageNumberPagination) through the API view. Prints a markdown table and writes JSON to
bench-results/.
"""

import argparse
import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--fetches", type=int, default=10)
    parser.add_argument("--timeout-seconds", type=int, default=120, help="statement timeout per query")
    parser.add_argument("--budget-seconds", type=float, default=120, help="stop a size's hand-outs after this long")
    parser.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/tally_bench_scale_queue")
    )
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    import psycopg

    base, _, name = args.pg_url.rpartition("/")
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="bench.peers.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DATABASE_URL=args.pg_url,
        BENCH_CELERY_QUEUE=f"bench-scale-{secrets.token_hex(4)}",
    )
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    results = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "sizes": []}
    try:
        subprocess.run(  # noqa: S603
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        os.environ.update(env)
        import django

        django.setup()
        for size in sizes:
            results["sizes"].append(measure(size, args.fetches, args.timeout_seconds, args.budget_seconds))
            print(json.dumps(results["sizes"][-1]), flush=True)
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"scale-queue-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(render(results))
    return 0


def _seed(project, size: int) -> float:
    """COPY `size` generated examples into the project; the seconds it took."""
    import hashlib

    from django.db import connection
    from django.utils import timezone

    now = timezone.now().isoformat()
    start = time.perf_counter()
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor under Django's wrapper
        columns = "project_id, text, text_hash, meta, submitted_count, priority, created_at"
        with raw.copy(f"COPY annotation_example ({columns}) FROM STDIN") as copy:
            for i in range(size):
                text = f"Generated example {i} for the queue scale benchmark, project {project.pk}."
                digest = hashlib.sha256(text.encode()).hexdigest()
                copy.write_row((project.pk, text, digest, "{}", 0, 0.0, now))
        cursor.execute("ANALYZE annotation_example")
    return time.perf_counter() - start


def measure(size: int, fetches: int, timeout_seconds: int, budget_seconds: float) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.db.utils import OperationalError
    from rest_framework.test import APIClient

    from annotation import services
    from annotation.models import Membership

    from .stats import latency_summary

    User = get_user_model()
    admin = User.objects.create(username=f"scale-admin-{size}")
    project = services.project_create(name=f"Scale {size}", labels=["a", "b"], created_by=admin)
    seed_seconds = _seed(project, size)
    result = {"examples": size, "seed_copy_seconds": seed_seconds}

    with connection.cursor() as cursor:
        cursor.execute(f"SET statement_timeout = {int(timeout_seconds * 1000)}")
    hand_outs, broke = [], None
    for i in range(fetches):
        if sum(hand_outs) > budget_seconds:
            broke = f"stopped after {len(hand_outs)} hand-outs: over the {budget_seconds:.0f} s budget"
            break
        annotator = User.objects.create(username=f"scale-ann-{size}-{i}")
        services.membership_set(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
        start = time.perf_counter()
        try:
            attempt = services.claim_next(project=project, annotator=annotator)
        except OperationalError as exc:
            broke = f"claim_next exceeded the {timeout_seconds} s statement timeout: {str(exc).splitlines()[0]}"
            break
        hand_outs.append(time.perf_counter() - start)
        with transaction.atomic():
            services.attempt_skip(attempt_id=attempt.pk, annotator=annotator)
    result["next_example"] = latency_summary(hand_outs)
    result["next_example_broke"] = broke

    client = APIClient(SERVER_NAME="127.0.0.1")
    client.force_authenticate(admin)
    pages = {}
    for label, page in (("first", 1), ("middle", max(size // 50 // 2, 1))):
        start = time.perf_counter()
        try:
            response = client.get(f"/api/projects/{project.slug}/examples/", {"page": page})
            pages[label] = {"page": page, "status": response.status_code, "ms": (time.perf_counter() - start) * 1000}
        except OperationalError as exc:
            pages[label] = {"page": page, "error": str(exc).splitlines()[0]}
    result["example_list"] = pages
    with connection.cursor() as cursor:
        cursor.execute("RESET statement_timeout")
    return result


def render(results: dict) -> str:
    lines = [
        f"Next-example hand-out vs pool size (PostgreSQL, in-process, {results['date']})",
        "",
        "| examples | seed (COPY) | next example p50 | p95 | admin list page 1 | middle page | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["sizes"]:
        n = r["next_example"]
        pages = r["example_list"]

        def ms(value):
            return "n/a" if value is None else f"{value:.0f} ms"

        lines.append(
            f"| {r['examples']:,} | {r['seed_copy_seconds']:.1f} s | {ms(n['p50_ms'])} | {ms(n['p95_ms'])} | "
            f"{ms(pages['first'].get('ms'))} | {ms(pages['middle'].get('ms'))} | {r['next_example_broke'] or ''} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
