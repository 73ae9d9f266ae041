"""Labor ledger benchmarks, on PostgreSQL, in a throwaway database this script creates and drops.

1. Submissions through the real path (claim, heartbeat, submit: annotation.services with the
   ledger hook writing time + piece pay in the same transaction): submissions per second, and
   the share of each submission spent in the ledger.
2. A large ledger (default 100,000 entries, 50 annotators, 30 days), written with bulk inserts
   and a correct hash chain: verify_ledger, settling all 30 days, the per-annotator-per-period
   labor report (one SQL query), one annotator's earnings page data.

Usage:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tally .venv/bin/python bench/ledger_bench.py \
        [--entries 100000] [--submissions 500] [--out bench-results/ledger.json]
"""

import argparse
import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")


@contextmanager
def timed(results: dict, name: str):
    start = time.perf_counter()
    yield
    results[name] = round(time.perf_counter() - start, 3)
    print(f"{name}: {results[name]} s", flush=True)


def bench_submissions(n: int, results: dict) -> None:
    from annotation import hooks as annotation_hooks
    from annotation import services as annotation_services
    from labor_ledger import services
    from labor_ledger.models import LedgerEntry
    from tests.factories import UserFactory, add_examples, add_member, make_project

    admin = UserFactory(username="bench-admin")
    project = make_project(admin=admin, name="Bench submissions")
    add_examples(project, [f"bench text {i}" for i in range(n)])
    t0 = datetime.now(UTC) - timedelta(hours=2)
    services.pay_policy_create(
        project=project,
        created_by=admin,
        effective_from=t0,
        now=t0,
        piece_rate=Decimal("0.10"),
        floor_hourly_rate=Decimal("12"),
    )
    annotator = add_member(project, user=UserFactory(username="bench-annotator"))
    label = project.labels.first().pk
    ledger_seconds = 0.0
    original = services.attempt_closed

    def measured(event):
        nonlocal ledger_seconds
        start = time.perf_counter()
        try:
            return original(event)
        finally:
            ledger_seconds += time.perf_counter() - start

    handlers = annotation_hooks.attempt_closed._handlers
    handlers[handlers.index(original)] = measured
    try:
        clock = t0
        start = time.perf_counter()
        for i in range(n):
            attempt = annotation_services.claim_next(project=project, annotator=annotator, now=clock)
            annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=clock)
            clock += timedelta(seconds=4)
            annotation_services.annotation_submit(
                attempt_id=attempt.pk, annotator=annotator, label_ids=[label], idempotency_key=f"b{i}", now=clock
            )
            clock += timedelta(seconds=1)
        total = time.perf_counter() - start
    finally:
        handlers[handlers.index(measured)] = original
    entries = LedgerEntry.objects.filter(project=project).count()
    results["submissions"] = n
    results["submission_loop_s"] = round(total, 3)
    results["submissions_per_s"] = round(n / total, 1)
    results["ledger_ms_per_submission"] = round(1000 * ledger_seconds / n, 2)
    results["ledger_share_of_submission"] = round(ledger_seconds / total, 3)
    results["entries_written_by_submissions"] = entries
    print(
        f"{n} submissions (claim + heartbeat + submit) in {total:.2f} s: {n / total:.0f}/s; "
        f"ledger {1000 * ledger_seconds / n:.2f} ms each ({ledger_seconds / total:.0%}), {entries} entries",
        flush=True,
    )


def build_large_ledger(n_entries: int, annotators: int = 50, days: int = 30):
    """Bulk-insert a ledger with a correct chain: time and piece-pay pairs, spread over days."""
    from django.db import transaction

    from labor_ledger import chain, money
    from labor_ledger.models import Balance, ChainHead, LedgerEntry, TimeCategory
    from labor_ledger.pricing import policy_in_force
    from tests.factories import UserFactory, add_member, make_project

    admin = UserFactory(username="bench-ledger-admin")
    project = make_project(admin=admin, name="Bench ledger")
    users = [add_member(project, user=UserFactory(username=f"bench-ann-{i}")) for i in range(annotators)]
    start = datetime(2030, 1, 1, tzinfo=UTC)
    from labor_ledger import services

    services.pay_policy_create(
        project=project,
        created_by=admin,
        effective_from=start,
        now=start,
        piece_rate=Decimal("0.08"),
        floor_hourly_rate=Decimal("12"),
    )
    policy = policy_in_force(project_id=project.pk, at=start)
    prev, created = chain.GENESIS, datetime.now(UTC)
    link = chain.GENESIS  # the keyed MAC chain (chain.seal), as Books.add writes it
    balances = {u.pk: Decimal(0) for u in users}
    batch, seq = [], 0
    step = timedelta(seconds=days * 86400 / n_entries)
    with transaction.atomic():
        for i in range(n_entries):
            seq += 1
            user = users[i % annotators]
            at = start + step * i
            is_time = i % 2 == 0
            active = Decimal(20 + i % 40)
            entry = LedgerEntry(
                project_id=project.pk,
                seq=seq,
                annotator_id=user.pk,
                kind=LedgerEntry.Kind.WORK_TIME if is_time else LedgerEntry.Kind.PIECE_PAY,
                time_category=TimeCategory.SUBMITTED if is_time else "",
                policy_id=policy.pk,
                currency=project.currency,
                active_seconds=active if is_time else 0,
                wall_seconds=active + 2 if is_time else 0,
                counted_seconds=active if is_time else 0,
                units=0 if is_time else 1,
                amount=Decimal("0") if is_time else Decimal("0.08"),
                floor_amount=money.hourly(Decimal(12), active) if is_time else Decimal(0),
                client_amount=Decimal(0),
                occurred_at=at,
                period_start=at.date(),
                idempotency_key=f"bench:{project.pk}:{seq}",
                prev_hash=prev,
                created_at=created,
                reason="bench",
            )
            for name in ("amount", "floor_amount", "client_amount"):
                setattr(entry, name, money.entry_amount(getattr(entry, name)))
            for name in ("active_seconds", "wall_seconds", "counted_seconds"):
                setattr(entry, name, money.seconds(getattr(entry, name)))
            link = chain.seal(entry, prev_link=link)  # v3, as Books.add writes it
            prev = entry.entry_hash
            balances[user.pk] += entry.amount
            batch.append(entry)
            if len(batch) == 5000:
                LedgerEntry.objects.bulk_create(batch)
                batch = []
        LedgerEntry.objects.bulk_create(batch)
        ChainHead.objects.create(project=project, seq=seq, last_hash=prev, last_mac=link)
        per_user = n_entries // annotators
        Balance.objects.bulk_create(
            Balance(
                project=project,
                annotator_id=uid,
                currency=project.currency,
                amount=amount,
                entry_count=per_user + (1 if idx < n_entries % annotators else 0),
                last_seq=0,
            )
            for idx, (uid, amount) in enumerate(balances.items())
        )
    return project, users, start + timedelta(days=days + 1)


def bench_large_ledger(n_entries: int, results: dict) -> None:
    from labor_ledger import selectors, settlement
    from labor_ledger.models import LedgerEntry

    with timed(results, "build_large_ledger_s"):
        project, users, after = build_large_ledger(n_entries)
    results["large_ledger_entries"] = n_entries
    with timed(results, "verify_ledger_s"):
        result = selectors.ledger_verify(project=project)
    assert result.ok, result.problems[:5]
    with timed(results, "settle_30_days_x_50_annotators_s"):
        settlements = settlement.project_settle(project=project, now=after)
    results["settlements"] = len(settlements)
    with timed(results, "labor_report_by_annotator_and_period_s"):
        rows = list(
            selectors.labor_totals(
                entries=LedgerEntry.objects.filter(project=project), by=["annotator_id", "period_start"]
            )
        )
    results["labor_report_rows"] = len(rows)
    with timed(results, "earnings_page_data_s"):
        selectors.earnings_for(project=project, annotator=users[0], now=after)
    with timed(results, "verify_ledger_after_settlement_s"):
        assert selectors.ledger_verify(project=project).ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--submissions", type=int, default=500)
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "ledger.json"))
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.vendor != "postgresql":
        sys.exit("The ledger benchmark runs on PostgreSQL: set DATABASE_URL.")
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    old = setup_databases(verbosity=0, interactive=False)
    try:
        results["database"] = "PostgreSQL " + ".".join(str(v) for v in divmod(connection.pg_version, 10000))
        bench_submissions(args.submissions, results)
        bench_large_ledger(args.entries, results)
    finally:
        teardown_databases(old, verbosity=0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
