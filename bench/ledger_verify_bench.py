"""Ledger verification speed (issue 18, item 2), on PostgreSQL, in a throwaway test database.

Writes a ledger of --entries v3 entries (default 1,000,000) with a correct hash and MAC chain
through COPY (generated in Python with chain.seal, the same function appends call), then times:

- verify_project, one process, every entry (the chain, the checkpoints, balances, settlements),
  with the batch check and with the entry-by-entry reference, alternated;
- `verify_ledger --full --jobs N`: seq ranges in N threads, a database connection each;
- `verify_ledger` incremental: after a verified checkpoint and --append new entries, only those
  are re-hashed (the daily check).

Usage:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tally .venv/bin/python bench/ledger_verify_bench.py \
        [--entries 1000000] [--jobs 2] [--append 10000] [--out bench-results/ledger-verify.json]
"""

import argparse
import io
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

COLUMNS = (
    "project_id",
    "seq",
    "annotator_id",
    "kind",
    "reversed_kind",
    "time_category",
    "attempt_id",
    "annotation_id",
    "reading_id",
    "reverses_id",
    "policy_id",
    "active_seconds",
    "wall_seconds",
    "counted_seconds",
    "units",
    "amount",
    "currency",
    "floor_amount",
    "client_amount",
    "occurred_at",
    "period_start",
    "acting_user_id",
    "reason",
    "idempotency_key",
    "prev_hash",
    "entry_hash",
    "created_at",
    "hash_version",
    "mac",
    "mac_key_id",
)


def write_entries(project, users, policy, *, first: int, n: int, prev: str, link: str, start: datetime):
    """COPY n chained v3 entries after (prev, link); returns the new (prev, link, sums)."""
    from django.db import connection

    from labor_ledger import chain, money

    created = datetime.now(UTC)
    sums: dict[int, list] = {u.pk: [Decimal(0), 0] for u in users}
    step = timedelta(seconds=2)
    floor_by_active = {a: money.hourly(Decimal(12), Decimal(a)) for a in range(20, 60)}
    zero, piece = Decimal("0.000000"), Decimal("0.080000")
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY labor_ledger_ledgerentry ({', '.join(COLUMNS)}) FROM STDIN") as copy,
    ):
        for i in range(first, first + n):
            user = users[i % len(users)]
            at = start + step * i
            is_time = i % 2 == 0
            active = 20 + i % 40
            e = SimpleNamespace(
                project_id=project.pk,
                seq=i,
                annotator_id=user.pk,
                kind="work_time" if is_time else "piece_pay",
                reversed_kind="",
                time_category="submitted" if is_time else "",
                attempt_id=None,
                annotation_id=None,
                reading_id=None,
                reverses_id=None,
                policy_id=policy.pk,
                active_seconds=Decimal(active).quantize(Decimal("0.001")) if is_time else Decimal("0.000"),
                wall_seconds=Decimal(active + 2).quantize(Decimal("0.001")) if is_time else Decimal("0.000"),
                counted_seconds=Decimal(active).quantize(Decimal("0.001")) if is_time else Decimal("0.000"),
                units=0 if is_time else 1,
                amount=zero if is_time else piece,
                currency=project.currency,
                floor_amount=floor_by_active[active] if is_time else zero,
                client_amount=zero,
                occurred_at=at,
                period_start=at.date(),
                acting_user_id=None,
                reason="bench",
                idempotency_key=f"bench:{project.pk}:{i}",
                prev_hash=prev,
                created_at=created,
            )
            link = chain.seal(e, prev_link=link)
            prev = e.entry_hash
            sums[user.pk][0] += e.amount
            sums[user.pk][1] += 1
            copy.write_row([getattr(e, c) for c in COLUMNS])
    return prev, link, sums


def build(n: int, annotators: int = 50):
    from django.db import transaction
    from django.db.models import F

    from labor_ledger import chain, services
    from labor_ledger.models import Balance, ChainHead
    from labor_ledger.pricing import policy_in_force
    from tests.factories import UserFactory, add_member, make_project

    admin = UserFactory(username="bench-verify-admin")
    project = make_project(admin=admin, name="Bench verify")
    users = [add_member(project, user=UserFactory(username=f"bench-verify-{i}")) for i in range(annotators)]
    start = datetime(2030, 1, 1, tzinfo=UTC)
    services.pay_policy_create(
        project=project,
        created_by=admin,
        effective_from=start,
        now=start,
        piece_rate=Decimal("0.08"),
        floor_hourly_rate=Decimal("12"),
    )
    policy = policy_in_force(project_id=project.pk, at=start)
    with transaction.atomic():
        prev, link, sums = write_entries(
            project, users, policy, first=1, n=n, prev=chain.GENESIS, link=chain.GENESIS, start=start
        )
        ChainHead.objects.create(project=project, seq=n, last_hash=prev, last_mac=link)
        Balance.objects.bulk_create(
            Balance(project=project, annotator_id=uid, currency=project.currency, amount=a, entry_count=c, last_seq=0)
            for uid, (a, c) in sums.items()
        )

    def append(k: int):
        with transaction.atomic():
            head = ChainHead.objects.select_for_update().get(project=project)
            new_prev, new_link, more = write_entries(
                project, users, policy, first=head.seq + 1, n=k, prev=head.last_hash, link=head.last_mac, start=start
            )
            ChainHead.objects.filter(project=project).update(seq=head.seq + k, last_hash=new_prev, last_mac=new_link)
            for uid, (a, c) in more.items():
                Balance.objects.filter(project=project, annotator_id=uid).update(
                    amount=F("amount") + a, entry_count=F("entry_count") + c
                )

    return project, append


def existing(n: int):
    """The project of a ledger of n entries kept by an earlier --keep run, or None."""
    from labor_ledger.models import ChainHead

    head = ChainHead.objects.filter(project__name="Bench verify").select_related("project").first()
    return head.project if head is not None and head.seq == n else None


def _cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process on this machine (the PostgreSQL backend)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def components(project, results: dict) -> None:
    """Where the time goes: PostgreSQL computing the compact bytes (alone, and fetched through
    the cursor), the same rows fetched without them, and the Python chain check over rows already
    in memory: the batch check and the entry-by-entry reference (verify_chain(fast=False))."""
    from django.db import connection, transaction

    from labor_ledger import verification

    part = verification.plan(project)[0]
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    with transaction.atomic():
        t, cpu, pg = time.perf_counter(), time.process_time(), _cpu_seconds(backend)
        chunks = list(verification._rows(part, verification.CHUNK))
        fetch = time.perf_counter() - t
        cpu, pg = time.process_time() - cpu, _cpu_seconds(backend) - pg
    n = sum(len(c) for c in chunks)
    loops, loop_cpu = {}, {}
    original = verification._rows
    verification._rows = lambda part, chunk: iter(chunks)
    try:
        for fast in (False, True, False, True):  # alternated: the load moves
            t, c = time.perf_counter(), time.process_time()
            checked = verification.verify_chain(verification.plan(project)[0], fast=fast)
            loops.setdefault(fast, []).append(time.perf_counter() - t)
            loop_cpu.setdefault(fast, []).append(time.process_time() - c)
            assert not checked.problems, checked.problems[:3]
            assert checked.batched == (n if fast else 0)
    finally:
        verification._rows = original
    chunks.clear()  # free the memory before the next fetch
    with connection.cursor() as cur:
        t = time.perf_counter()
        cur.execute(
            f"SELECT sum(length({verification.chain.COMPACT_SQL_UTF8})) FROM labor_ledger_ledgerentry "  # noqa: S608
            "WHERE project_id = %s",
            [project.pk],
        )
        encode = time.perf_counter() - t
    with transaction.atomic(), connection.connection.cursor(name="bench_no_compact") as cur:
        t = time.perf_counter()
        cur.execute(
            "SELECT seq, hash_version, prev_hash, entry_hash, mac, mac_key_id FROM labor_ledger_ledgerentry "
            "WHERE project_id = %s ORDER BY seq",
            [project.pk],
            binary=True,
        )
        while cur.fetchmany(verification.CHUNK):
            pass
        plain = time.perf_counter() - t
    results["postgresql_encode_only_entries_per_s"] = round(n / encode)
    results["fetch_compact_rows_entries_per_s"] = round(n / fetch)
    results["fetch_rows_without_compact_entries_per_s"] = round(n / plain)
    results["python_reference_loop_entries_per_s"] = round(n / min(loops[False]))
    results["python_batch_check_entries_per_s"] = round(n / min(loops[True]))
    # CPU time per entry (less moved by the load than the rates): the PostgreSQL backend while it
    # encodes and sends the rows, this process while it fetches them, and the two checks
    results["cpu_us_per_entry"] = cpu_us = {
        "postgresql_encode_and_send": round(pg / n * 1e6, 2),
        "python_fetch": round(cpu / n * 1e6, 2),
        "python_reference_loop": round(min(loop_cpu[False]) / n * 1e6, 2),
        "python_batch_check": round(min(loop_cpu[True]) / n * 1e6, 2),
    }
    print(f"CPU time per entry, microseconds: {cpu_us}", flush=True)
    print(
        f"components: PostgreSQL encodes {n / encode:,.0f}/s; fetching the compact rows {n / fetch:,.0f}/s, "
        f"the same rows without the compact bytes {n / plain:,.0f}/s; over rows in memory the entry-by-entry "
        f"check {n / min(loops[False]):,.0f}/s, the batch check {n / min(loops[True]):,.0f}/s "
        f"(load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )


def run_command(*args) -> tuple[float, str]:
    from django.core.management import call_command

    out = io.StringIO()
    started = time.perf_counter()
    call_command("verify_ledger", *args, stdout=out)
    return time.perf_counter() - started, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--append", type=int, default=10_000)
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "ledger-verify.json"))
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the test database and reuse a ledger of --entries built by an earlier --keep run "
        "(the build takes minutes; the incremental step is skipped, it would grow the ledger)",
    )
    args = parser.parse_args()
    if args.keep and not os.environ.get("TALLY_LEDGER_MAC_KEY"):
        sys.exit("--keep needs TALLY_LEDGER_MAC_KEY in the environment: the test settings draw a new key per process.")

    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    from labor_ledger import verification

    if connection.vendor != "postgresql":
        sys.exit("The verification benchmark runs on PostgreSQL: set DATABASE_URL.")
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "entries": args.entries,
    }
    old = setup_databases(verbosity=0, interactive=False, keepdb=args.keep, serialized_aliases=())
    try:
        results["database"] = "PostgreSQL " + ".".join(str(v) for v in divmod(connection.pg_version, 10000))
        project = existing(args.entries) if args.keep else None
        if project is None:
            t = time.perf_counter()
            project, append = build(args.entries)
            results["build_s"] = round(time.perf_counter() - t, 2)
            print(f"built {args.entries} entries in {results['build_s']} s", flush=True)
            with connection.cursor() as cur:
                cur.execute("VACUUM ANALYZE labor_ledger_ledgerentry")
        else:
            append = None
            print(f"reusing the kept ledger of {args.entries} entries", flush=True)

        components(project, results)
        # the batch check, and the entry-by-entry reference (the check before it), alternated
        runs: dict[bool, list[float]] = {True: [], False: []}
        for fast in (True, False, True, False):

            def run_parts(parts, fast=fast):
                return [verification.verify_chain(p, fast=fast) for p in parts]

            t = time.perf_counter()
            result = verification.verify_project(project=project, run_parts=run_parts)
            seconds = time.perf_counter() - t
            assert result.ok, result.problems[:5]
            runs[fast].append(seconds)
            name = "batch check" if fast else "entry by entry (reference)"
            print(
                f"verify, one process, {name}: {seconds:.2f} s, {args.entries / seconds:,.0f} entries/s "
                f"(load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        results["verify_one_process_s"] = round(min(runs[True]), 2)
        results["verify_one_process_entries_per_s"] = round(args.entries / min(runs[True]))
        results["verify_one_process_reference_s"] = round(min(runs[False]), 2)
        results["verify_one_process_reference_entries_per_s"] = round(args.entries / min(runs[False]))

        seconds, out = run_command("--full", "--jobs", str(args.jobs))
        results[f"verify_ledger_full_jobs_{args.jobs}_s"] = round(seconds, 2)
        results[f"verify_ledger_full_jobs_{args.jobs}_entries_per_s"] = round(args.entries / seconds)
        print(
            f"verify_ledger --full --jobs {args.jobs}: {seconds:.2f} s, {args.entries / seconds:,.0f} entries/s "
            f"(load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )

        if append is not None and not args.keep:
            append(args.append)
            seconds, out = run_command("--jobs", "1")
            assert "re-hashed after" in out, out
            results["verify_ledger_incremental_new_entries"] = args.append
            results["verify_ledger_incremental_s"] = round(seconds, 2)
            print(f"verify_ledger (incremental, {args.append} new entries): {seconds:.2f} s", flush=True)
    finally:
        if not args.keep:
            teardown_databases(old, verbosity=0)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
