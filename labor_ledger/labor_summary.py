"""Labor summaries: the per-version report's figures written down as of a ledger position, so
that the report reads ~versions x annotators rows instead of the whole ledger three times.

A model version is immutable (its manifest, hence its label deltas, never change) and the ledger
is append-only, so what the ledger held on a version's labels up to entry #S never changes
either. `summarize(project_id=...)` writes a LaborSummary at the project's chain head S:

* every version already summarized is rolled forward from the previous summary (its rows plus
  the entries appended since, the same CTEs the report uses: reports/sql.py rolled_ctes);
* every indexed version not summarized yet gets its rows: its label deltas joined to the
  ledger (entries up to #S), its embodied labor as its parent's embodied rows plus its own
  delta rows, and the time recorded before its snapshot;
* the entries from the previous summary's seq to S, summed per (annotator, period).

The report (reports/frames.versions_frame) then adds only the entries after S. It is written by
the worker right after a version's label deltas (labor_index.version_registered calls it), and
by `manage.py labor_index_backfill`; reports never write, and a report asked for a version not
in the latest summary runs the full statement (reports/sql.version_sql) instead.

Rows are append-only (never updated; PostgreSQL refuses UPDATE). Writers of one project are
serialized by a transaction-scoped advisory lock, and every insert is ON CONFLICT DO NOTHING on
the rows' unique keys: two workers summarizing at once write one summary, and running it again
when nothing was appended and nothing registered writes nothing. PostgreSQL only: on SQLite
(the demo) nothing is summarized and the report always runs the full statement.
"""

from __future__ import annotations

import logging
import time

from django.db import connection, transaction
from django.utils import timezone

from training.models import ModelVersion

from .models import ChainHead, LaborSummary, VersionLaborIndex, VersionLaborStamp
from .reports.sql import (
    DELTA_COLUMNS,
    EMBODIED_COLUMNS,
    FLOOR_POLICY_JOIN,
    LABEL_MEASURES,
    LABEL_SUMS,
    NEW_MEASURES,
    PERIOD_MEASURES,
    UNPAID,
    period_sums,
    rolled_ctes,
)

logger = logging.getLogger(__name__)

LOCK_CLASS = 0x7A11  # pg_advisory_xact_lock(LOCK_CLASS, project id): one summary writer per project
EVERY_VERSION = 2**31 - 1

NEW_COLUMNS = tuple(f"new_{m}" for m in NEW_MEASURES)
DELTA_ROW = ("version_id", "annotator_id", *DELTA_COLUMNS, *LABEL_MEASURES, *NEW_COLUMNS)
EMBODIED_ROW = ("version_id", "annotator_id", *EMBODIED_COLUMNS, *LABEL_MEASURES)
RECORDED_ROW = ("version_id", "time_category", "unpaid", "active_seconds", "wall_seconds")
PERIOD_ROW = ("annotator_id", "period_start", *PERIOD_MEASURES)


def _insert(table: str, columns: tuple[str, ...], select: str, conflict: str) -> str:
    return (
        f"INSERT INTO {table} (summary_id, {', '.join(columns)}) {select} "  # noqa: S608 - constants
        f"ON CONFLICT ({conflict}) DO NOTHING"
    )


def _roll_forward_sql() -> list[str]:
    """The previous summary's rows of every version, plus the entries after it, into the new one."""
    ctes = f"WITH RECURSIVE {rolled_ctes()}"
    return [
        _insert(
            "labor_ledger_versiondeltasum",
            DELTA_ROW,
            f"{ctes} SELECT %(summary)s, {', '.join(DELTA_ROW)} FROM delta_rows",  # noqa: S608 - constants of reports/sql.py
            "summary_id, version_id, annotator_id",
        ),
        _insert(
            "labor_ledger_versionembodiedsum",
            EMBODIED_ROW,
            f"{ctes} SELECT %(summary)s, {', '.join(EMBODIED_ROW)} FROM embodied_rows",  # noqa: S608 - constants of reports/sql.py
            "summary_id, version_id, annotator_id",
        ),
        _insert(
            "labor_ledger_versionrecordedsum",
            RECORDED_ROW,
            f"{ctes} SELECT %(summary)s, {', '.join(RECORDED_ROW)} FROM recorded_rows",  # noqa: S608 - constants of reports/sql.py
            "summary_id, version_id, time_category, unpaid",
        ),
        _insert(
            "labor_ledger_ledgerperiodsum",
            PERIOD_ROW,
            f"{ctes} SELECT %(summary)s, {', '.join(PERIOD_ROW)} FROM tail_periods",  # noqa: S608 - constants of reports/sql.py
            "summary_id, annotator_id, period_start",
        ),
        _insert(
            "labor_ledger_versionlaborstamp",
            ("version_id", "seconds"),
            "SELECT %(summary)s, s.version_id, 0 FROM labor_ledger_versionlaborstamp s WHERE s.summary_id = %(base)s",
            "summary_id, version_id",
        ),
    ]


# New versions: their delta rows (all at once), recorded time (all at once, one pass over the
# ledger), then each one's embodied rows from its parent's, in sequence order.

_NEW_DELTAS = _insert(
    "labor_ledger_versiondeltasum",
    DELTA_ROW,
    f"""
    WITH labels AS (
      SELECT d.version_id, d.annotator_id, SUM(d.sign) AS labels,
             SUM(CASE WHEN d.human THEN d.sign ELSE 0 END) AS human_labels,
             COUNT(*) FILTER (WHERE d.sign > 0) AS new_labels,
             COUNT(*) FILTER (WHERE d.sign < 0) AS dropped_labels
      FROM labor_ledger_versionlabeldelta d
      WHERE d.version_id = ANY(%(versions)s)
      GROUP BY d.version_id, d.annotator_id
    ),
    signed AS (
      SELECT d.version_id, d.annotator_id, d.sign,
             {", ".join(f"COALESCE({expr}, 0) AS {name}" for name, expr in LABEL_SUMS.items())}
      FROM labor_ledger_versionlabeldelta d
      JOIN labor_ledger_ledgerentry e ON e.annotation_id = d.annotation_id
      {FLOOR_POLICY_JOIN}
      WHERE e.project_id = %(project)s AND e.seq <= %(through)s AND d.version_id = ANY(%(versions)s)
      GROUP BY d.version_id, d.annotator_id, d.sign
    ),
    labor AS (
      SELECT version_id, annotator_id,
             {", ".join(f"SUM(sign * {m}) AS {m}" for m in LABEL_MEASURES)},
             {", ".join(f"COALESCE(SUM({m}) FILTER (WHERE sign > 0), 0) AS new_{m}" for m in NEW_MEASURES)}
      FROM signed
      GROUP BY version_id, annotator_id
    )
    SELECT %(summary)s, l.version_id, l.annotator_id, {", ".join(f"l.{c}" for c in DELTA_COLUMNS)},
           {", ".join(f"COALESCE(b.{m}, 0)" for m in (*LABEL_MEASURES, *NEW_COLUMNS))}
    FROM labels l
    LEFT JOIN labor b ON b.version_id = l.version_id AND b.annotator_id = l.annotator_id
    """,  # noqa: S608 - constants of this module and reports/sql.py; values are bound parameters
    "summary_id, version_id, annotator_id",
)

_NEW_RECORDED = _insert(
    "labor_ledger_versionrecordedsum",
    RECORDED_ROW,
    f"""
    WITH m AS (
      SELECT mv.id, mv.snapshot_at, ROW_NUMBER() OVER (ORDER BY mv.snapshot_at, mv.sequence) AS pos
      FROM training_modelversion mv WHERE mv.id = ANY(%(versions)s)
    ),
    booked AS (
      SELECT width_bucket(e.occurred_at, (SELECT array_agg(m.snapshot_at ORDER BY m.snapshot_at) FROM m)) AS bucket,
             e.time_category, {UNPAID} AS unpaid,
             SUM(e.active_seconds) AS active_seconds, SUM(e.wall_seconds) AS wall_seconds
      FROM labor_ledger_ledgerentry e
      WHERE e.project_id = %(project)s AND e.seq <= %(through)s AND e.time_category <> ''
      GROUP BY 1, 2, 3
    )
    SELECT %(summary)s, m.id, b.time_category, b.unpaid, SUM(b.active_seconds), SUM(b.wall_seconds)
    FROM m JOIN booked b ON b.bucket < m.pos
    GROUP BY m.id, b.time_category, b.unpaid
    """,  # noqa: S608 - constants of this module and reports/sql.py; values are bound parameters
    "summary_id, version_id, time_category, unpaid",
)

_EMBODIED_FROM_PARENT = _insert(
    "labor_ledger_versionembodiedsum",
    EMBODIED_ROW,
    f"""
    SELECT %(summary)s, %(version)s, x.annotator_id,
           {", ".join(f"SUM(x.{c})" for c in (*EMBODIED_COLUMNS, *LABEL_MEASURES))}
    FROM (
      SELECT p.annotator_id, {", ".join(f"p.{c}" for c in (*EMBODIED_COLUMNS, *LABEL_MEASURES))}
      FROM labor_ledger_versionembodiedsum p
      WHERE p.summary_id = %(summary)s AND p.version_id = %(parent)s
      UNION ALL
      SELECT d.annotator_id, {", ".join(f"d.{c}" for c in (*EMBODIED_COLUMNS, *LABEL_MEASURES))}
      FROM labor_ledger_versiondeltasum d
      WHERE d.summary_id = %(summary)s AND d.version_id = %(version)s
    ) x
    GROUP BY x.annotator_id
    """,  # noqa: S608 - constants of this module and reports/sql.py; values are bound parameters
    "summary_id, version_id, annotator_id",
)

_PERIODS_FIRST = _insert(
    "labor_ledger_ledgerperiodsum",
    PERIOD_ROW,
    f"""
    SELECT %(summary)s, e.annotator_id, e.period_start, {period_sums()}
    FROM labor_ledger_ledgerentry e
    WHERE e.project_id = %(project)s AND e.seq <= %(through)s
    GROUP BY e.annotator_id, e.period_start
    """,  # noqa: S608 - constants of this module and reports/sql.py; values are bound parameters
    "summary_id, annotator_id, period_start",
)


def summarize(*, project_id: int) -> LaborSummary | None:
    """Write the project's labor summary at its chain head (see the module docstring); returns
    it, or None where there is nothing to summarize (no indexed version) or the database is
    not PostgreSQL. Idempotent; safe beside another writer."""
    if connection.vendor != "postgresql":
        return None
    started = time.perf_counter()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_CLASS, project_id])
            cursor.execute("SET LOCAL work_mem = '64MB'")
        indexed = list(
            ModelVersion.objects.filter(project_id=project_id, pk__in=VersionLaborIndex.objects.values("version_id"))
            .order_by("sequence")
            .values_list("pk", "parent_id", "sequence")
        )
        if not indexed:
            return None
        head = ChainHead.objects.filter(project_id=project_id).values_list("seq", flat=True).first() or 0
        base = LaborSummary.objects.filter(project_id=project_id).order_by("-seq").first()
        if base is not None and base.seq > head:  # cannot happen: the chain only grows
            raise RuntimeError(f"labor summary #{base.seq} is ahead of the chain head #{head}")
        if base is not None and base.seq == head:
            summary = base
        else:
            LaborSummary.objects.bulk_create(
                [
                    LaborSummary(
                        project_id=project_id,
                        seq=head,
                        from_seq=base.seq if base else 0,
                        computed_at=timezone.now(),
                    )
                ],
                ignore_conflicts=True,
            )
            summary = LaborSummary.objects.get(project_id=project_id, seq=head)
            params = {
                "project": project_id,
                "summary": summary.pk,
                "base": base.pk if base else None,
                "after": base.seq if base else 0,
                "through": head,
                "upto": EVERY_VERSION,
            }
            with connection.cursor() as cursor:
                if base is None:
                    cursor.execute(_PERIODS_FIRST, params)
                else:
                    for sql in _roll_forward_sql():
                        cursor.execute(sql, params)
        stamped = set(VersionLaborStamp.objects.filter(summary=summary).values_list("version_id", flat=True))
        todo = []
        for version_id, parent_id, _sequence in indexed:
            if version_id in stamped:
                continue
            if parent_id is not None and parent_id not in stamped:
                logger.warning(
                    "labor ledger: model version %s not summarized: its parent %s is not (the report "
                    "computes it from the ledger until it is)",
                    version_id,
                    parent_id,
                )
                continue
            todo.append((version_id, parent_id))
            stamped.add(version_id)  # its children, later in the list, can follow it
        if todo:
            params = {
                "project": project_id,
                "summary": summary.pk,
                "through": head,
                "versions": [v for v, _ in todo],
            }
            with connection.cursor() as cursor:
                cursor.execute(_NEW_DELTAS, params)
                cursor.execute(_NEW_RECORDED, params)
                for version_id, parent_id in todo:
                    cursor.execute(
                        _EMBODIED_FROM_PARENT, {"summary": summary.pk, "version": version_id, "parent": parent_id}
                    )
            seconds = (time.perf_counter() - started) / len(todo)
            VersionLaborStamp.objects.bulk_create(
                [VersionLaborStamp(summary=summary, version_id=v, seconds=seconds) for v, _ in todo],
                ignore_conflicts=True,
            )
        wrote = summary is not base or bool(todo)
    if wrote:
        _analyze()
    return summary


SUMMARY_TABLES = (
    "labor_ledger_laborsummary",
    "labor_ledger_versionlaborstamp",
    "labor_ledger_versiondeltasum",
    "labor_ledger_versionembodiedsum",
    "labor_ledger_versionrecordedsum",
    "labor_ledger_ledgerperiodsum",
)


def _analyze() -> None:
    """Fresh planner statistics for the summary tables. Without them (new tables, or a first
    backfill that autovacuum has not caught up with) PostgreSQL estimates one row per CTE and
    rescans an aggregate per row: the report took 122 s instead of 0.5 s at 100,000 annotations
    x 50 versions. ANALYZE samples at most 30,000 rows per table (~0.1-0.4 s); a role that may
    not analyze gets a warning from PostgreSQL, not an error."""
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(SUMMARY_TABLES)}")


def summarize_quietly(*, project_id: int) -> None:
    """summarize() for the worker's hook: a failure is logged, never raised (the report then
    runs the full statement for the versions not summarized)."""
    try:
        summarize(project_id=project_id)
    except Exception:
        logger.exception("labor ledger: summarizing the labor of project %s failed", project_id)


def projects_unsummarized():
    """Ids of the projects with an indexed model version that their latest summary lacks (a
    values queryset; for the backfill command)."""
    from django.db.models import Exists, OuterRef, Subquery

    latest_summary = LaborSummary.objects.filter(project_id=OuterRef(OuterRef("project_id"))).order_by("-seq")
    stamped = VersionLaborStamp.objects.filter(
        version_id=OuterRef("pk"), summary_id=Subquery(latest_summary.values("pk")[:1])
    )
    return (
        ModelVersion.objects.filter(pk__in=VersionLaborIndex.objects.values("version_id"))
        .exclude(Exists(stamped))
        .values("project_id")
        .distinct()
    )


# --- reading ----------------------------------------------------------------------------------


def latest(*, project_id: int, upto: int | None = None) -> LaborSummary | None:
    """The project's latest summary when it holds every version up to sequence `upto` (all when
    None), else None: then the report computes from the ledger alone. Reads only."""
    if connection.vendor != "postgresql":
        return None
    summary = LaborSummary.objects.filter(project_id=project_id).order_by("-seq").first()
    if summary is None:
        return None
    versions = ModelVersion.objects.filter(project_id=project_id)
    if upto is not None:
        versions = versions.filter(sequence__lte=upto)
    missing = versions.exclude(pk__in=VersionLaborStamp.objects.filter(summary=summary).values("version_id")).exists()
    return None if missing else summary
