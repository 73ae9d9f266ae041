"""Labor report benchmark: the labor-per-version report of a project with 1,000,000 annotations
across 50 model versions, on PostgreSQL, in a throwaway database this script creates and drops.

The data is generated with bulk SQL (INSERT ... SELECT over generate_series), shaped like a
real project: 500,000 texts labeled twice by 200 annotators over 50 days (10 % of the second
labels disagree), 5 % extra attempts skipped or expired, 3 % of labels later retracted or
rejected (with the ledger's reversals), time between tasks, instruction reading, daily floor
top-ups and settlements from the generated entries, a few bonuses; one model version per day,
each trained on every accepted label of its moment outside a 20 % held-out split (so the
manifests hold ~20 million rows, as cumulative training sets do), each version the child of the
one before.

The versions are generated, not trained, so no worker indexed them when they were registered:
`manage.py labor_index_backfill` writes their labor index (each version's label deltas against
its parent) and their labor summary (labor_ledger/labor_summary.py: each version's per-annotator
rows stamped with the ledger position), what the worker writes for a new version, and is timed
on its own. Then the books move on after the stamp, through the ledger's own services: admins
reject labels the versions were trained on (reversals on old labels) and book adjustments, so
the report has entries after the summary to add (the tail). In-process, the per-version
statement from the summary and the full statement (reports/sql.version_sql, the reference) are
timed and their rows compared (they must be equal); then one roll forward (what the next
registration writes) is timed. Then it produces
the report the way an auditor does, in a fresh process: `manage.py labor_report --by version
--format parquet` (and csv, json), and measures wall time and that process's peak memory
(ru_maxrss), plus the other report groupings and the Labor Card of the last version. Reports
only read.

Usage:
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/tally_bench_labor_report \
        .venv/bin/python bench/labor_report_bench.py [--annotations 1000000] [--versions 50] \
        [--annotators 200] [--keep] [--reuse] [--note "..."]

--keep leaves the database in place afterwards; --reuse measures an existing one (made with
--keep) without generating again. The database name must contain "bench": it is dropped.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report_files import write_keeping_notes  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/tally_bench_labor_report"
SLUG = "bench-labor-report"
T0 = datetime(2029, 3, 1, tzinfo=UTC)
PIECE = Decimal("0.08")
CLIENT_PER_EXAMPLE = Decimal("0.25")
FLOOR = Decimal("12")
TAIL_SIZE = 100  # labels rejected and adjustments booked after the summary


def log(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", flush=True)


def admin_connection(url: str):
    import psycopg

    parts = urlparse(url)
    return psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname="postgres",
        autocommit=True,
    )


def recreate_database(url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    with admin_connection(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    with admin_connection(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the data ---------------------------------------------------------------------------


LEDGER_COLUMNS = (
    "id, project_id, seq, annotator_id, kind, reversed_kind, time_category, attempt_id, annotation_id, "
    "reading_id, reverses_id, policy_id, active_seconds, wall_seconds, counted_seconds, units, amount, currency, "
    "floor_amount, client_amount, occurred_at, period_start, acting_user_id, reason, idempotency_key, prev_hash, "
    "entry_hash, created_at, hash_version, mac, mac_key_id"
)


def chain_entries(connection) -> tuple[str, str]:
    """Give the staged entries (bench_ledger, in seq order) their real hash chain, with the
    ledger's own canonical form (labor_ledger.chain), and COPY them into the ledger, so that
    `verify_ledger` checks a chain like one the services write. Returns the head's hash and MAC."""
    from types import SimpleNamespace

    from labor_ledger import chain

    columns = [c.strip() for c in LEDGER_COLUMNS.split(",")]
    prev, last_seq = chain.GENESIS, 0
    link = chain.GENESIS  # the keyed MAC chain (chain.seal), as Books.add writes it
    raw = connection.connection  # the psycopg connection under Django's wrapper
    with raw.cursor() as cursor:
        while True:  # keyset batches: one connection cannot read a cursor while it COPYs
            cursor.execute(
                f"SELECT {LEDGER_COLUMNS} FROM bench_ledger WHERE seq > %s ORDER BY seq LIMIT 20000", [last_seq]
            )
            rows = cursor.fetchall()
            if not rows:
                break
            with cursor.copy(f"COPY labor_ledger_ledgerentry ({LEDGER_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    entry = SimpleNamespace(**dict(zip(columns, row, strict=True)))
                    entry.prev_hash = prev
                    link = chain.seal(entry, prev_link=link)  # v3, as Books.add writes it
                    prev = entry.entry_hash
                    copy.write_row([getattr(entry, c) for c in columns])
            last_seq = rows[-1][columns.index("seq")]
    return prev, link


def build(*, n_annotations: int, n_versions: int, n_annotators: int) -> dict:
    from django.core.management import call_command
    from django.db import connection, transaction

    from annotation.models import Membership
    from labor_ledger import services as ledger_services
    from tests.factories import UserFactory, add_member, make_project

    t = time.perf_counter()
    call_command("migrate", verbosity=0)
    log(f"migrated in {time.perf_counter() - t:.1f} s")
    admin = UserFactory(username="bench-admin")
    project = make_project(admin=admin, name="Bench labor report", labels=("World", "Sports", "Business", "Sci-Tech"))
    add_member(project, Membership.Role.AUDITOR, UserFactory(username="bench-auditor"))
    for i in range(n_annotators):
        add_member(project, user=UserFactory(username=f"bench-annotator-{i:03d}"))
    policy = ledger_services.pay_policy_create(
        project=project,
        created_by=admin,
        effective_from=T0 - timedelta(days=1),
        now=T0 - timedelta(days=1),
        piece_rate=PIECE,
        floor_hourly_rate=FLOOR,
        client_price_per_example=CLIENT_PER_EXAMPLE,
    )
    labels = list(project.labels.order_by("order", "id").values_list("id", flat=True))
    n = n_annotations
    n_examples = n // 2
    n_side = n // 20  # skipped and expired attempts
    span = n_versions * 86400.0  # seconds: one version per day
    p = {
        "project": project.pk,
        "n": n,
        "e": n_examples,
        "s": n_side,
        "a": n_annotators,
        "span": span,
        "t0": T0,
        "policy": policy.pk,
        "l0": labels[0],
        "nl": len(labels),
        "piece": PIECE,
        "client": CLIENT_PER_EXAMPLE,
        "floor": FLOOR,
        "currency": project.currency,
    }
    steps = []

    def run(name: str, sql: str) -> None:
        start = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(sql, p)
        steps.append((name, time.perf_counter() - start))
        log(f"{name}: {time.perf_counter() - start:.1f} s")

    with transaction.atomic():
        with connection.cursor() as cursor:
            # Bulk load: the rows are consistent by construction, so skip the per-row foreign-key
            # triggers (the append-only triggers only fire on UPDATE/DELETE anyway).
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(
                "CREATE TEMP TABLE bench_user ON COMMIT DROP AS "
                "SELECT (row_number() OVER (ORDER BY id) - 1)::int AS idx, id AS user_id "
                "FROM auth_user WHERE username LIKE 'bench-annotator-%%'"
            )
        run(
            "examples",
            """
            INSERT INTO annotation_example
                (id, project_id, text, text_hash, meta, submitted_count, priority, priority_reason, created_at,
                 extra_annotations, routed_reason)
            SELECT i, %(project)s, 'bench text number ' || i, md5(i::text) || md5('x' || i), '{}', 2, 0, '', %(t0)s,
                   0, ''
            FROM generate_series(1, %(e)s) i
            """,
        )
        # Submitted attempt i (1..n) labels text (i+1)/2; the two labels of a text come from two
        # different annotators. Annotator speed varies, so some stay above the floor by piece pay.
        run(
            "plan",
            """
            CREATE TEMP TABLE bench_plan ON COMMIT DROP AS
            SELECT i, (i + 1) / 2 AS example_id, u.user_id AS annotator_id, u.idx AS annotator_idx,
                   %(t0)s + make_interval(secs => i * %(span)s / %(n)s) AS finished_at,
                   (12 + u.idx %% 40 + i %% 7 + 0.25)::numeric(12, 3) AS active,
                   CASE WHEN i %% 67 = 0 THEN 'retracted' WHEN i %% 71 = 0 THEN 'rejected' ELSE 'accepted' END
                       AS status,
                   %(l0)s + (((i + 1) / 2) %% %(nl)s
                             + CASE WHEN i %% 2 = 0 AND i %% 6 = 0 THEN 1 ELSE 0 END) %% %(nl)s AS label_id
            FROM generate_series(1, %(n)s) i
            JOIN bench_user u ON u.idx = ((((i + 1) / 2) * 37 + (i + 1) %% 2) %% %(a)s)
            """,
        )
        run(
            "attempts",
            """
            INSERT INTO annotation_attempt (id, project_id, example_id, annotator_id, status, claimed_at,
                lease_expires_at, shown_at, last_active_at, finished_at, active_seconds, wall_seconds, heartbeat_count)
            SELECT i, %(project)s, example_id, annotator_id, 'submitted',
                   finished_at - make_interval(secs => active + 4),
                   finished_at + interval '10 minutes', finished_at - make_interval(secs => active + 4), finished_at,
                   finished_at, active, active + 4, (active / 5)::int
            FROM bench_plan
            UNION ALL
            SELECT %(n)s + s, %(project)s, 1 + (s * 13) %% %(e)s, u.user_id,
                   CASE WHEN s %% 5 = 0 THEN 'expired' ELSE 'skipped' END,
                   f - interval '30 seconds', f + interval '10 minutes', f - interval '30 seconds', f, f,
                   (5 + s %% 10)::numeric, 30, 2
            FROM generate_series(1, %(s)s) s
            JOIN bench_user u ON u.idx = s %% %(a)s
            CROSS JOIN LATERAL (SELECT %(t0)s + make_interval(secs => s * %(span)s / %(s)s + 7) AS f) t
            """,
        )
        run(
            "annotations",
            """
            INSERT INTO annotation_annotation (id, project_id, example_id, annotator_id, attempt_id, status, source,
                created_at, status_changed_at)
            SELECT i, %(project)s, example_id, annotator_id, i, status, 'human', finished_at,
                   CASE WHEN status <> 'accepted' THEN finished_at + interval '36 hours' END
            FROM bench_plan
            """,
        )
        run(
            "annotation labels",
            "INSERT INTO annotation_annotation_labels (id, annotation_id, label_id) "
            "SELECT i, i, label_id FROM bench_plan",
        )
        # The ledger, as labor_ledger.services writes it: per submission a time entry and a piece
        # pay; a retraction or rejection reverses both and books the time to its new category.
        run(
            "ledger plan",
            """
            CREATE TEMP TABLE bench_entry ON COMMIT DROP AS
            WITH base AS (
              SELECT b.*, round(%(floor)s * active / 3600, 6) AS floor_amt,
                     finished_at + interval '36 hours' AS changed_at
              FROM bench_plan b
            )
            SELECT 't' || i AS key, NULL::text AS reverses_key, annotator_id, 'work_time' AS kind, '' AS reversed_kind,
                   'submitted' AS cat, i AS attempt_id, i AS annotation_id, active, active + 4 AS wall,
                   active AS counted, 0 AS units, 0::numeric AS amount, floor_amt, 0::numeric AS client_amt,
                   finished_at AS at
            FROM base
            UNION ALL
            SELECT 'p' || i, NULL, annotator_id, 'piece_pay', '', '', i, i, 0, 0, 0, 1, %(piece)s, 0, %(client)s,
                   finished_at
            FROM base
            UNION ALL
            SELECT 'rt' || i, 't' || i, annotator_id, 'reversal', 'work_time', 'submitted', i, i, -active,
                   -(active + 4), -active, 0, 0, -floor_amt, 0, changed_at
            FROM base WHERE status <> 'accepted'
            UNION ALL
            SELECT 'n' || i, NULL, annotator_id, 'unpaid_time', '', status, i, i, active, active + 4, active, 0, 0,
                   floor_amt, 0, changed_at
            FROM base WHERE status <> 'accepted'
            UNION ALL
            SELECT 'rp' || i, 'p' || i, annotator_id, 'reversal', 'piece_pay', '', i, i, 0, 0, 0, -1, -%(piece)s, 0,
                   -%(client)s, changed_at
            FROM base WHERE status <> 'accepted'
            UNION ALL
            SELECT 'b' || i, NULL, annotator_id, 'unpaid_time', '', 'between_tasks', i, NULL, 0, 20, 0, 0, 0, 0, 0,
                   finished_at
            FROM base WHERE i %% 4 = 0
            UNION ALL
            SELECT 's' || a.id, NULL, a.annotator_id, 'unpaid_time', '', a.status, a.id, NULL, a.active_seconds,
                   a.wall_seconds, a.active_seconds, 0, 0, round(%(floor)s * a.active_seconds / 3600, 6), 0,
                   a.finished_at
            FROM annotation_attempt a WHERE a.project_id = %(project)s AND a.id > %(n)s
            UNION ALL
            SELECT 'r' || u.idx, NULL, u.user_id, 'unpaid_time', '', 'instruction_reading', NULL, NULL, 120, 150,
                   120, 0, 0, round(%(floor)s * 120 / 3600, 6), 0, %(t0)s + interval '30 minutes'
            FROM bench_user u
            """,
        )
        # Settlement: every complete day is topped up to the floor per annotator (from the entries above).
        run(
            "top-ups",
            """
            -- a bonus is pay of its period: in the settlement's gross, like the services book it
            INSERT INTO bench_entry
            SELECT 'x' || u.idx, NULL, u.user_id, 'bonus', '', '', NULL, NULL, 0, 0, 0, 0, 5, 0, 0,
                   %(t0)s + interval '10 days'
            FROM bench_user u WHERE u.idx %% 20 = 0;
            CREATE TEMP TABLE bench_settle ON COMMIT DROP AS
            SELECT annotator_id, (at AT TIME ZONE 'UTC')::date AS period, SUM(amount) AS gross,
                   SUM(floor_amt) AS floor_target, GREATEST(SUM(floor_amt) - SUM(amount), 0) AS top_up,
                   SUM(active) AS active, SUM(wall) AS wall, SUM(counted) AS counted, SUM(units)::int AS examples,
                   SUM(client_amt) AS client
            FROM bench_entry GROUP BY 1, 2;
            INSERT INTO bench_entry
            SELECT 'u' || annotator_id || ':' || period, NULL, annotator_id, 'floor_top_up', '', '', NULL, NULL,
                   0, 0, 0, 0, top_up, 0, 0, (period + 1)::timestamp AT TIME ZONE 'UTC' + interval '1 hour'
            FROM bench_settle WHERE top_up > 0;
            """,
        )
        run(
            "ledger entries (staged)",
            """
            CREATE TEMP TABLE bench_seq ON COMMIT DROP AS
            SELECT key, row_number() OVER (ORDER BY at, key) AS seq FROM bench_entry;
            CREATE INDEX ON bench_seq (key);
            CREATE TEMP TABLE bench_ledger (LIKE labor_ledger_ledgerentry) ON COMMIT DROP;
            CREATE INDEX ON bench_ledger (seq);
            INSERT INTO bench_ledger (id, project_id, seq, annotator_id, kind, reversed_kind,
                time_category, attempt_id, annotation_id, reading_id, reverses_id, policy_id, active_seconds,
                wall_seconds, counted_seconds, units, amount, currency, floor_amount, client_amount, occurred_at,
                period_start, acting_user_id, reason, idempotency_key, prev_hash, entry_hash, created_at,
                hash_version, mac, mac_key_id)
            SELECT s.seq, %(project)s, s.seq, e.annotator_id, e.kind, e.reversed_kind, e.cat, e.attempt_id,
                   e.annotation_id, NULL, r.seq, %(policy)s, e.active, e.wall, e.counted, e.units, e.amount,
                   %(currency)s, e.floor_amt, e.client_amt, e.at,
                   CASE WHEN e.kind = 'floor_top_up' THEN (e.at AT TIME ZONE 'UTC')::date - 1
                        ELSE (e.at AT TIME ZONE 'UTC')::date END,
                   e.annotator_id, 'bench', 'bench:' || s.seq, '', '', e.at, 2, '', ''
            FROM bench_entry e JOIN bench_seq s ON s.key = e.key LEFT JOIN bench_seq r ON r.key = e.reverses_key
            """,
        )
        start = time.perf_counter()
        head_hash, head_mac = chain_entries(connection)
        steps.append(("ledger entries (hash chain, COPY)", time.perf_counter() - start))
        log(f"ledger entries (hash chain, COPY): {time.perf_counter() - start:.1f} s")
        p["head_hash"], p["head_mac"] = head_hash, head_mac
        run(
            "chain head, balances, settlements",
            """
            INSERT INTO labor_ledger_chainhead (project_id, seq, last_hash, last_mac, updated_at)
            SELECT %(project)s, MAX(seq), %(head_hash)s, %(head_mac)s, now()
            FROM labor_ledger_ledgerentry WHERE project_id = %(project)s;
            INSERT INTO labor_ledger_balance (project_id, annotator_id, currency, amount, entry_count, last_seq)
            SELECT %(project)s, annotator_id, %(currency)s, SUM(amount), COUNT(*), MAX(seq)
            FROM labor_ledger_ledgerentry WHERE project_id = %(project)s GROUP BY annotator_id;
            INSERT INTO labor_ledger_settlement (project_id, annotator_id, period, currency, gross, floor_target,
                top_up, rounding, payable, active_seconds, wall_seconds, counted_seconds, examples, client_amount,
                top_up_entry_id, created_at)
            SELECT %(project)s, st.annotator_id, st.period, %(currency)s, st.gross, st.floor_target, st.top_up, 0,
                   st.gross + st.top_up, st.active, st.wall, st.counted, st.examples, st.client, e.id,
                   (st.period + 1)::timestamp AT TIME ZONE 'UTC' + interval '1 hour'
            FROM bench_settle st
            LEFT JOIN labor_ledger_ledgerentry e ON e.project_id = %(project)s
                 AND e.idempotency_key = 'bench:' || (SELECT seq FROM bench_seq
                                                      WHERE key = 'u' || st.annotator_id || ':' || st.period)
            """,
        )
        # One model version a day, each the child of the one before, trained on every label
        # accepted at its snapshot outside the held-out fifth of the texts.
        run(
            "runs and versions",
            f"""
            INSERT INTO training_trainingrun (id, project_id, status, loop, trigger, created_at, started_at,
                finished_at, claim_token, claimed_by, celery_task_id, attempts, stage, progress, error)
            SELECT k, %(project)s, 'succeeded', 'fast', 'labels', s, s, s + interval '40 seconds', '', '', '', 1,
                   'done', '{{}}', ''
            FROM generate_series(1, {n_versions}) k
            CROSS JOIN LATERAL (SELECT %(t0)s + make_interval(days => k) AS s) t;
            INSERT INTO training_modelversion (id, project_id, sequence, parent_id, run_id, kind, loop, hyperparams,
                classes, encoder_key, device, device_name, embedding_seconds, training_seconds, scoring_seconds,
                pool_embedding_seconds, metrics, n_annotations, n_examples, n_annotators, manifest_hash, weights_path,
                weights_sha256,
                snapshot_at, created_at, aggregation)
            SELECT k, %(project)s, k, NULLIF(k - 1, 0), k, 'minilm', 'fast', '{{}}', '[]', 'minilm', 'cpu',
                   'cpu: x86_64, 2 threads', 20 + k * 0.5, 8 + k * 0.2, 3, 0,
                   jsonb_build_object('accuracy', round((0.55 + 0.35 * (1 - exp(-k / 12.0)))::numeric, 4),
                                      'eval_size', 4000, 'eval_source', 'holdout',
                                      'eval_examples_hash', md5('eval' || k)),
                   c.n_annotations, c.n_examples, c.n_annotators, md5('m' || k) || md5('n' || k),
                   'bench/' || k, md5('w' || k) || md5('v' || k), s, s + interval '1 minute', 'majority'
            FROM generate_series(1, {n_versions}) k
            CROSS JOIN LATERAL (SELECT %(t0)s + make_interval(days => k) AS s) t
            CROSS JOIN LATERAL (
              SELECT COUNT(*) AS n_annotations, COUNT(DISTINCT example_id) AS n_examples,
                     COUNT(DISTINCT annotator_id) AS n_annotators
              FROM annotation_annotation a
              WHERE a.project_id = %(project)s AND a.created_at <= t.s
                AND (a.status = 'accepted' OR a.status_changed_at > t.s) AND a.example_id %% 5 <> 0
            ) c
            """,
        )
        for k in range(1, n_versions + 1):
            start = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    INSERT INTO training_manifestentry (version_id, annotation_id, example_id, label_id)
                    SELECT %(k)s, a.id, a.example_id, al.label_id
                    FROM annotation_annotation a
                    JOIN annotation_annotation_labels al ON al.annotation_id = a.id
                    WHERE a.project_id = %(project)s AND a.created_at <= %(at)s
                      AND (a.status = 'accepted' OR a.status_changed_at > %(at)s) AND a.example_id %% 5 <> 0
                    ORDER BY a.id, al.label_id
                    """,
                    {"k": k, "project": project.pk, "at": T0 + timedelta(days=k)},
                )
            if k % 10 == 0:
                log(f"manifest of version {k}: {time.perf_counter() - start:.1f} s")
        with connection.cursor() as cursor:
            for table in (
                "annotation_example",
                "annotation_attempt",
                "annotation_annotation",
                "annotation_annotation_labels",
                "labor_ledger_ledgerentry",
                "training_trainingrun",
                "training_modelversion",
            ):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")
            cursor.execute(
                "INSERT INTO training_projecttrainingconfig (project_id, model_kind, sampling, enabled, "
                "retrain_every_n_labels, deep_every_n_labels, min_labels, qc_share, holdout_share, max_gold_eval, "
                "train_on_machine_labels, hyperparams, seed, current_version_id, encoder_key, "
                "updated_at, aggregation) "
                "VALUES (%s, 'minilm', 'margin', false, 1, 0, 4, 0.1, 0.2, 2000, true, '{}', 0, %s, 'minilm', "
                "now(), 'majority')",
                [project.pk, n_versions],
            )
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    log(f"vacuum analyze: {time.perf_counter() - start:.1f} s")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT COUNT(*) FROM annotation_annotation), (SELECT COUNT(*) FROM labor_ledger_ledgerentry), "
            "(SELECT COUNT(*) FROM training_manifestentry), (SELECT COUNT(*) FROM training_modelversion), "
            "pg_size_pretty(pg_database_size(current_database()))"
        )
        annotations, entries, manifest, versions, size = cursor.fetchone()
    return {
        "annotations": annotations,
        "ledger_entries": entries,
        "manifest_rows": manifest,
        "model_versions": versions,
        "annotators": n_annotators,
        "database_size": size,
        "generate_steps_s": {name: round(s, 1) for name, s in steps},
    }


# --- the measurements -------------------------------------------------------------------


def run_process(argv: list[str], env: dict) -> tuple[float, float, str]:
    """Run a command in a fresh process: its wall time, its own peak resident memory (MiB,
    from wait4's rusage) and its output."""
    with tempfile.TemporaryFile() as output:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{text}")
    return seconds, usage.ru_maxrss / 1024, text


def report(args: list[str], env: dict, out: Path, name: str) -> dict:
    target = out / name
    seconds, peak, _ = run_process(
        [sys.executable, "manage.py", "labor_report", "--project", SLUG, *args, "--out", str(target)], env
    )
    log(f"labor_report {' '.join(args)}: {seconds:.2f} s, peak RSS {peak:.0f} MiB, {target.stat().st_size:,} bytes")
    return {"command": "labor_report " + " ".join(args), "seconds": round(seconds, 2), "peak_rss_mib": round(peak, 1)}


CARD_PROBE = """
import json, sys, time
import django
django.setup()
from labor_ledger.reports import card as labor_card
from training.models import ModelVersion
version = ModelVersion.objects.select_related("project", "parent").get(
    project__slug=sys.argv[1], sequence=int(sys.argv[2])
)
start = time.perf_counter()
card = labor_card.build_card(project=version.project, version=version)
data_s = time.perf_counter() - start
start = time.perf_counter()
charts = labor_card.card_charts(card)
charts_s = time.perf_counter() - start
print(json.dumps({"card_data_s": round(data_s, 2), "charts_s": round(charts_s, 2),
                  "svg_kib": {k: round(len(v) / 1024) for k, v in charts.items()},
                  "contested_labels": card["labor"]["not_used"]["contested"]["labels"],
                  "held_out_labels": card["labor"]["not_used"]["held_out"]["labels"]}))
"""


TAIL_PROBE = """
import json, sys, time
from datetime import timedelta
from decimal import Decimal
import django
django.setup()
from django.db.models import Max
from annotation import services as annotation_services
from annotation.models import Annotation, Membership
from labor_ledger import services as ledger_services
from labor_ledger.models import LaborSummary, LedgerEntry
from training.models import ManifestEntry, ModelVersion
slug, n = sys.argv[1], int(sys.argv[2])
last = ModelVersion.objects.filter(project__slug=slug).order_by("-sequence").first()
project = last.project
admin = Membership.objects.get(project=project, role=Membership.Role.ADMIN).user
now = LedgerEntry.objects.filter(project=project).aggregate(t=Max("occurred_at"))["t"] + timedelta(hours=1)
summary_seq = LaborSummary.objects.filter(project=project).order_by("-seq").values_list("seq", flat=True).first()
ids = list(ManifestEntry.objects.filter(version=last).order_by("annotation_id")
           .values_list("annotation_id", flat=True).distinct()[: n])
start = time.perf_counter()
rejected = 0
for i, annotation in enumerate(Annotation.objects.filter(pk__in=ids, status="accepted").order_by("pk")):
    annotation_services.annotation_review(annotation=annotation, status=Annotation.Status.REJECTED, actor=admin,
                                          now=now + timedelta(seconds=i))
    rejected += 1
annotators = list(Membership.objects.filter(project=project, role=Membership.Role.ANNOTATOR)
                  .values_list("user_id", flat=True)[: n])
for i, user_id in enumerate(annotators):
    user = Membership.objects.get(project=project, user_id=user_id).user
    ledger_services.manual_entry_create(project=project, annotator=user,
                                        kind="adjustment", amount=Decimal("-0.37"), reason="bench tail", actor=admin,
                                        idempotency_key=f"bench-tail-{i}", now=now + timedelta(minutes=30, seconds=i))
tail = LedgerEntry.objects.filter(project=project, seq__gt=summary_seq).count()
print(json.dumps({"rejected_labels": rejected, "adjustments": len(annotators), "tail_entries": tail,
                  "summary_seq": summary_seq, "seconds": round(time.perf_counter() - start, 1)}))
"""

STATEMENT_PROBE = """
import json, sys, time
import django
django.setup()
from labor_ledger import labor_summary
from labor_ledger.models import LaborSummary, LedgerEntry
from labor_ledger.reports import frames
from labor_ledger.reports.sql import consistent_read, version_sql, version_summary_sql
from annotation.models import Project
project = Project.objects.get(slug=sys.argv[1])
repeats = int(sys.argv[2])
params = {"project": project.pk, "upto": 2**31 - 1}
def rows(sql, p):
    from django.db import connection
    with connection.cursor() as cursor:
        cursor.execute(sql, p)
        names = [c[0] for c in cursor.description]
        return {(r[0], r[1]): dict(zip(names, r)) for r in cursor.fetchall()}
def summary_rows():
    summary = labor_summary.latest(project_id=project.pk)
    return rows(version_summary_sql(), {**params, "base": summary.pk, "after": summary.seq, "through": 2**63 - 1})
out = {}
def best(fn, n):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        with consistent_read():
            fn()
        times.append(time.perf_counter() - start)
    return round(min(times), 3), round(max(times), 3)
out["tail_entries"] = LedgerEntry.objects.filter(project=project).count() - LaborSummary.objects.filter(
    project=project).order_by("-seq").first().seq
out["summary_statement_s"] = best(summary_rows, repeats)
out["summary_versions_frame_s"] = best(lambda: frames.versions_frame(project), repeats)
out["reference_statement_s"] = best(lambda: rows(version_sql(), params), 1)[0]
with consistent_read():
    ours = summary_rows()
    reference = rows(version_sql(), params)
out["rows"] = len(reference)
out["equal_to_reference"] = ours == reference
start = time.perf_counter()
labor_summary.summarize(project_id=project.pk)
out["roll_forward_s"] = round(time.perf_counter() - start, 2)
out["summary_rows_after_roll_forward"] = {
    m: getattr(__import__("labor_ledger.models", fromlist=[m]), m).objects.count()
    for m in ("VersionEmbodiedSum", "VersionDeltaSum", "VersionRecordedSum", "LedgerPeriodSum")
}
out["summary_statement_empty_tail_s"] = best(summary_rows, repeats)
with consistent_read():
    out["equal_to_reference_after_roll_forward"] = summary_rows() == rows(version_sql(), params)
print(json.dumps(out))
"""


def measure(env: dict, results: dict, repeats: int, versions: int) -> None:
    from django.db.models import Max, Sum

    from labor_ledger.models import VersionLaborIndex

    out = Path(tempfile.mkdtemp(prefix="labor-report-"))
    # The auditor's first question: do the books verify? (hash chain, balances, settlements)
    seconds, peak, text = run_process([sys.executable, "manage.py", "verify_ledger", "--project", SLUG], env)
    results["verify_ledger"] = {
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak, 1),
        "output": text.strip().splitlines()[0][:200] if text.strip() else "",
    }
    log(f"verify_ledger: {seconds:.1f} s, peak RSS {peak:.0f} MiB: {results['verify_ledger']['output']}")
    # What the worker does once per new version, here for all the generated ones at once.
    seconds, peak, text = run_process([sys.executable, "manage.py", "labor_index_backfill", "--project", SLUG], env)
    index = VersionLaborIndex.objects.aggregate(total=Sum("seconds"), worst=Max("seconds"))
    results["label_delta_index_backfill"] = {
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak, 1),
        "index_seconds_total": round(index["total"] or 0, 1),
        "index_seconds_worst_version": round(index["worst"] or 0, 2),
    }
    log(f"labor_index_backfill: {seconds:.1f} s, peak RSS {peak:.0f} MiB: {text.strip()[-200:]}")
    from labor_ledger.models import VersionLaborStamp

    stamps = VersionLaborStamp.objects.aggregate(total=Sum("seconds"))
    results["label_delta_index_backfill"]["summary_seconds_total"] = round(stamps["total"] or 0, 1)
    # The books move on after the stamp: reversals of trained labels, adjustments.
    seconds, _, text = run_process([sys.executable, "-c", TAIL_PROBE, SLUG, str(TAIL_SIZE)], env)
    results["tail_after_summary"] = json.loads(text.strip().splitlines()[-1])
    log(f"tail after the summary: {results['tail_after_summary']}")
    seconds, _, text = run_process([sys.executable, "-c", STATEMENT_PROBE, SLUG, str(repeats)], env)
    results["in_process"] = json.loads(text.strip().splitlines()[-1])
    log(f"in-process: {results['in_process']}")
    if not results["in_process"]["equal_to_reference"]:
        raise RuntimeError("the per-version statement from the summary differs from the full statement")
    results["first_by_version_report"] = report(["--by", "version", "--format", "parquet"], env, out, "cold.parquet")
    warm = [report(["--by", "version", "--format", "parquet"], env, out, f"v-{r}.parquet") for r in range(repeats)]
    warm += [report(["--by", "version", "--format", fmt], env, out, f"v.{fmt}") for fmt in ("csv", "json")]
    results["by_version"] = warm
    results["by_version_rows"] = _rows(out / "v-0.parquet")
    results["other_reports"] = [
        report(["--by", by, "--format", "csv"], env, out, f"by-{by}.csv") for by in ("annotator", "period", "project")
    ]
    results["other_reports"].append(
        report(
            ["--by", "annotator", "--model-version", str(versions), "--pseudonymize", "--format", "parquet"],
            dict(env, TALLY_PSEUDONYM_KEY="bench-pseudonym-key-not-a-secret"),
            out,
            "last-version-annotators.parquet",
        )
    )
    seconds, peak, text = run_process([sys.executable, "-c", CARD_PROBE, SLUG, str(versions)], env)
    card = json.loads(text.strip().splitlines()[-1])
    results["labor_card_of_last_version"] = {
        **card,
        "process_seconds": round(seconds, 2),
        "peak_rss_mib": round(peak, 1),
    }
    log(f"Labor Card of v{versions}: {card}, process {seconds:.2f} s, peak RSS {peak:.0f} MiB")
    seconds, peak, _ = run_process([sys.executable, "manage.py", "check"], env)
    results["django_process_start_s"] = round(seconds, 2)


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


def write_markdown(path: Path, results: dict) -> None:
    warm = [r for r in results["by_version"] if r["command"].endswith("parquet")]
    best = min(r["seconds"] for r in warm)
    worst = max(r["seconds"] for r in results["by_version"])
    peak = max(r["peak_rss_mib"] for r in results["by_version"])
    data = results.get("data", {})
    index = results["label_delta_index_backfill"]
    cold = results["first_by_version_report"]
    card = results["labor_card_of_last_version"]
    lines = [
        "# Labor report benchmark",
        "",
        "`make bench-labor-report` (bench/labor_report_bench.py): the labor-per-version report of a project with "
        f"{data.get('annotations', '?'):,} annotations across {data.get('model_versions', '?')} model versions, "
        "generated with bulk SQL in a throwaway PostgreSQL database, produced the way an auditor does "
        "(`manage.py labor_report`, a fresh process each time: Django start-up, the query, pandas, the file).",
        "",
        f"Machine: {results['machine']}; {results.get('database', '')}. Load average "
        f"{results['load_average_at_start']} at the start, {results.get('load_average_at_end')} at the end "
        "(above 1 per core, other work shared the machine and timings are noisy). " + (results.get("note") or ""),
        "",
        "| measure | result |",
        "|---|---|",
        f"| data | {data.get('annotations', 0):,} annotations, {data.get('ledger_entries', 0):,} ledger entries, "
        f"{data.get('manifest_rows', 0):,} manifest rows (cumulative training sets), "
        f"{data.get('annotators', '?')} annotators, database {data.get('database_size', '?')} |",
        f"| **labor per version, all {data.get('model_versions', '?')} versions (Parquet, warm)** | "
        f"**{best:.2f} s best, {worst:.2f} s worst of {len(results['by_version'])} runs (CSV and JSON included); "
        f"peak memory {peak:.0f} MiB** |",
        f"| same, first report after the index was written (a cold process and cache) | {cold['seconds']:.2f} s |",
        f"| `labor_index_backfill` of {data.get('model_versions', '?')} versions (each version's label deltas "
        "against its parent, once per version, ever; the worker writes them when a version is registered) | "
        f"{index['seconds']:.1f} s, of which {index['index_seconds_total']:.1f} s the deltas "
        f"({index['index_seconds_worst_version']:.2f} s for the largest version), {index['peak_rss_mib']:.0f} MiB |",
    ]
    if "summary_seconds_total" in index:
        lines.append(
            f"| of which the labor summary (each version's stamped rows, labor_ledger/labor_summary.py) | "
            f"{index['summary_seconds_total']:.1f} s |"
        )
    tail, probe = results.get("tail_after_summary"), results.get("in_process")
    if tail and probe:
        lines += [
            f"| entries appended after the summary (the tail: {tail['rejected_labels']} trained labels rejected, "
            f"{tail['adjustments']} adjustments) | {probe['tail_entries']:,} |",
            "| in-process, per-version statement from the summary plus the tail (best, worst of "
            f"{len(results['by_version']) - 2}) | **{probe['summary_statement_s'][0]:.3f} s**, "
            f"{probe['summary_statement_s'][1]:.3f} s |",
            "| in-process, versions_frame (statement, metadata, pandas) | "
            f"{probe['summary_versions_frame_s'][0]:.3f} s |",
            f"| in-process, the full statement (reports/sql.version_sql, the reference) | "
            f"{probe['reference_statement_s']:.2f} s; rows equal: {probe['equal_to_reference']} "
            f"({probe['rows']:,} rows) |",
            f"| roll forward (what the next registration writes: every version's rows + the tail) | "
            f"{probe['roll_forward_s']:.2f} s; then the statement {probe['summary_statement_empty_tail_s'][0]:.3f} s, "
            f"rows equal: {probe['equal_to_reference_after_roll_forward']} |",
        ]
    verify = results.get("verify_ledger")
    if verify:
        lines.append(
            f"| `verify_ledger` (the whole hash chain recomputed, balances and settlements checked) | "
            f"{verify['seconds']:.1f} s, {verify['peak_rss_mib']:.0f} MiB: {verify['output']} |"
        )
    for r in results["other_reports"]:
        lines.append(f"| `{r['command']}` | {r['seconds']:.2f} s, {r['peak_rss_mib']:.0f} MiB |")
    lines += [
        f"| Labor Card of the last version: data / three SVG charts | {card['card_data_s']:.2f} s / "
        f"{card['charts_s']:.2f} s (process {card['process_seconds']:.2f} s, {card['peak_rss_mib']:.0f} MiB); "
        "cached per ledger chain head afterwards |",
        f"| Django process start-up alone (`manage.py check`) | {results['django_process_start_s']:.2f} s |",
        "",
        "Memory is the report process's own peak resident set (`wait4` rusage). PostgreSQL runs the query with "
        "`work_mem = 64MB` set for the report's transaction (hash tables of the label deltas).",
        "",
        f"Raw figures: bench-results/labor_report.json ({results['date']}).",
        "",
    ]
    write_keeping_notes(path, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=int, default=1_000_000)
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--annotators", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the bench database in place")
    parser.add_argument("--reuse", action="store_true", help="measure an existing bench database")
    parser.add_argument("--build-only", action="store_true", help="generate the data, measure nothing (with --keep)")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "labor_report.json"))
    parser.add_argument("--markdown", default=str(ROOT / "BENCHMARKS-labor-report.md"))
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    if "bench" not in urlparse(url).path:
        sys.exit(f"Refusing to use {url}: the bench database is dropped, its name must contain 'bench'.")
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings.test")
    env.setdefault("DJANGO_SECRET_KEY", "bench-" + "x" * 50)
    os.environ.setdefault("DJANGO_SECRET_KEY", env["DJANGO_SECRET_KEY"])
    # One ledger MAC key for this process (which writes the generated chain) and the commands it
    # starts (verify_ledger checks it): config.settings.test otherwise draws one per process.
    env.setdefault("TALLY_LEDGER_MAC_KEY", "bench-labor-report-" + "k" * 40)
    os.environ.setdefault("TALLY_LEDGER_MAC_KEY", env["TALLY_LEDGER_MAC_KEY"])

    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU, Python {platform.python_version()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": args.note,
    }
    if not args.reuse:
        recreate_database(url)
    import django

    django.setup()
    from django.db import connection

    try:
        if not args.reuse:
            start = time.perf_counter()
            results["data"] = build(
                n_annotations=args.annotations, n_versions=args.versions, n_annotators=args.annotators
            )
            results["generate_s"] = round(time.perf_counter() - start, 1)
        results["database"] = f"PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 100}"
        connection.close()
        if args.build_only:
            return
        measure(env, results, args.repeats, args.versions)
        results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        connection.close()
        if not args.keep:
            drop_database(url)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"wrote {out}")
    if not args.build_only:
        write_markdown(Path(args.markdown), results)
        log(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
