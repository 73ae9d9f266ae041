"""The reports' SQL, and how it is read: one statement per report (never a Python loop over
ledger rows), run in one REPEATABLE READ snapshot together with the ledger's chain head.

The per-version statement does not scan each version's manifest against the ledger (for 50
versions of up to a million labels that is ~25 million joined rows): it reads the label deltas
the labor index holds (labor_ledger/labor_index.py: each version's manifest compared with its
parent's once, when the version was registered), joins only the labels added or dropped to the
ledger, and sums those deltas along each version's chain of ancestors. On PostgreSQL the
report reads a labor summary instead (version_summary_sql below: rows stamped with a ledger
position plus the entries after it); version_sql stays as the reference and the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from django.db import connection, transaction

from annotation.models import Project
from labor_ledger import chain
from labor_ledger.models import ChainHead, LedgerEntry

from .columns import ALLOCATED_LINES, CATEGORIES

Kind = LedgerEntry.Kind


# --- the SQL ---------------------------------------------------------------------------------


def _line(kind: str, alias: str = "e") -> str:
    """Entries of a pay line: that kind, and reversals of that kind."""
    return f"({alias}.kind = '{kind}' OR {alias}.reversed_kind = '{kind}')"


def _ledger_sums(alias: str = "e") -> str:
    """The measures of a group of entries (labor_ledger.selectors.TOTALS in SQL)."""
    e = alias
    return f"""
        COALESCE(SUM({e}.active_seconds), 0) AS active_seconds,
        COALESCE(SUM({e}.wall_seconds), 0) AS wall_seconds,
        COALESCE(SUM({e}.counted_seconds), 0) AS counted_seconds,
        COALESCE(SUM({e}.active_seconds) FILTER (WHERE {_line(Kind.UNPAID_TIME, e)}), 0) AS unpaid_active_seconds,
        COALESCE(SUM({e}.wall_seconds) FILTER (WHERE {_line(Kind.UNPAID_TIME, e)}), 0) AS unpaid_wall_seconds,
        COALESCE(SUM({e}.units), 0) AS examples,
        COALESCE(SUM({e}.amount) FILTER (WHERE {_line(Kind.PIECE_PAY, e)}), 0) AS piece_pay,
        COALESCE(SUM({e}.amount) FILTER (WHERE {_line(Kind.HOURLY_PAY, e)}), 0) AS hourly_pay,
        COALESCE(SUM({e}.amount) FILTER (WHERE {_line(Kind.FLOOR_TOP_UP, e)}), 0) AS floor_top_up,
        COALESCE(SUM({e}.amount) FILTER (WHERE {_line(Kind.BONUS, e)}), 0) AS bonus,
        COALESCE(SUM({e}.amount) FILTER (WHERE {_line(Kind.ADJUSTMENT, e)}), 0) AS adjustment,
        COALESCE(SUM({e}.amount), 0) AS pay,
        COALESCE(SUM({e}.floor_amount), 0) AS floor_amount,
        COALESCE(SUM({e}.client_amount), 0) AS client_amount,
        COUNT(*) AS entries"""


# Floor top-ups not written yet: per annotator and period without a settlement, what settlement
# would top up if the period closed now (money.floor_top_up in SQL: the floor earned, never
# below 0, less the period's pay, when positive). Read, never written; once the period is
# settled its top-up entry replaces this figure.
PROJECTED_CTE = """
    projected AS (
      SELECT q.annotator_id, q.period_start,
             CASE WHEN q.target > q.gross THEN q.target - q.gross ELSE 0 END AS projected_top_up
      FROM (
        SELECT e.annotator_id, e.period_start, SUM(e.amount) AS gross,
               CASE WHEN SUM(e.floor_amount) > 0 THEN SUM(e.floor_amount) ELSE 0 END AS target
        FROM labor_ledger_ledgerentry e
        WHERE e.project_id = %(project)s AND NOT EXISTS (
          SELECT 1 FROM labor_ledger_settlement s
          WHERE s.project_id = e.project_id AND s.annotator_id = e.annotator_id AND s.period = e.period_start)
        GROUP BY e.annotator_id, e.period_start
      ) q
    ),
    projected_by_annotator AS (
      SELECT annotator_id, SUM(projected_top_up) AS projected_top_up FROM projected GROUP BY annotator_id
    )"""

# The floor rate of a group, from the policies its entries were priced under (exact), not
# back-computed from entries' rounded floor amounts: sum(counted x rate) / sum(counted).
FLOOR_RATE_WEIGHT = "SUM(e.counted_seconds * COALESCE(fp.floor_hourly_rate, 0))"
FLOOR_POLICY_JOIN = "LEFT JOIN labor_ledger_paypolicy fp ON fp.id = e.policy_id"

# Each annotator's money booked per period rather than per label, per second worked: what a
# version's labels carry of it (see the module docstring).
RATES_CTE = f"""
    rates AS (
      SELECT e.annotator_id, SUM(e.counted_seconds) AS counted,
             COALESCE(SUM(e.amount) FILTER (WHERE {_line(Kind.FLOOR_TOP_UP)}), 0) AS floor_top_up,
             COALESCE(SUM(e.amount) FILTER (WHERE {_line(Kind.BONUS)}), 0) AS bonus,
             COALESCE(SUM(e.amount) FILTER (WHERE {_line(Kind.ADJUSTMENT)}), 0) AS adjustment
      FROM labor_ledger_ledgerentry e
      WHERE e.project_id = %(project)s
      GROUP BY e.annotator_id
    )"""  # noqa: S608 - constants of this module; values are bound parameters


def _allocated(counted: str, line: str, source: str = "rt") -> str:
    return f"CASE WHEN rt.counted > 0 THEN ROUND({counted} * COALESCE({source}.{line}, 0) / rt.counted, 6) ELSE 0 END"


def grouped_sql(*, by: str, scoped: bool) -> str:
    """Entries per (group, annotator); with a version, only those on the version's labels, plus
    the allocated lines. Projected top-ups of periods not settled yet: the annotator's (or the
    annotator's in that period) without a version, allocated like top-ups with one. One statement."""
    group = {"annotator": "", "period": "e.period_start AS period, ", "project": ""}[by]
    group_by = {"annotator": "", "period": "e.period_start, ", "project": ""}[by]
    scope = (
        " AND e.annotation_id IN"
        " (SELECT m.annotation_id FROM training_manifestentry m WHERE m.version_id = %(version)s)"
        if scoped
        else ""
    )
    labels = "COUNT(DISTINCT e.annotation_id) AS labels,"
    if scoped:
        allocated = ", ".join(
            f"{_allocated('g.counted_seconds', line)} AS allocated_{line}" for line in ALLOCATED_LINES
        )
        allocated += (
            ", 0 AS projected_top_up, "
            f"{_allocated('g.counted_seconds', 'projected_top_up', 'pj')} AS allocated_projected_top_up"
        )
        rates, rates_join = f"{RATES_CTE},", "LEFT JOIN rates rt ON rt.annotator_id = g.annotator_id"
        projected_join = "LEFT JOIN projected_by_annotator pj ON pj.annotator_id = g.annotator_id"
    else:
        allocated = ", ".join(f"0 AS allocated_{line}" for line in ALLOCATED_LINES)
        allocated += ", COALESCE(pj.projected_top_up, 0) AS projected_top_up, 0 AS allocated_projected_top_up"
        rates, rates_join = "", ""
        projected_join = (
            "LEFT JOIN projected pj ON pj.annotator_id = g.annotator_id AND pj.period_start = g.period"
            if by == "period"
            else "LEFT JOIN projected_by_annotator pj ON pj.annotator_id = g.annotator_id"
        )
    topped_up = (
        "(SELECT COUNT(*) FROM labor_ledger_settlement s WHERE s.project_id = %(project)s "
        "AND s.annotator_id = g.annotator_id AND s.top_up > 0) AS periods_topped_up"
    )
    return f"""
    WITH {rates}{PROJECTED_CTE},
    grouped AS (
      SELECT {group}e.annotator_id, {labels} {_ledger_sums()},
             {FLOOR_RATE_WEIGHT} AS floor_rate_weight
      FROM labor_ledger_ledgerentry e
      {FLOOR_POLICY_JOIN}
      WHERE e.project_id = %(project)s{scope}
      GROUP BY {group_by}e.annotator_id
    )
    SELECT g.*, u.username AS username, {allocated}, {topped_up}
    FROM grouped g
    JOIN auth_user u ON u.id = g.annotator_id
    {rates_join}
    {projected_join}
    """  # noqa: S608 - constants of this module; values are bound parameters


def _bucket_sql() -> str:
    """How many of the versions' snapshots were taken at or before the entry occurred: an entry
    was on the books when version j (in snapshot order, from 1) read its training set iff its
    bucket < j."""
    if connection.vendor == "postgresql":
        return (
            "width_bucket(e.occurred_at, (SELECT array_agg(s.snapshot_at ORDER BY s.snapshot_at) "
            "FROM training_modelversion s WHERE s.project_id = %(project)s AND s.sequence <= %(upto)s))"
        )
    return (
        "(SELECT COUNT(*) FROM training_modelversion s WHERE s.project_id = %(project)s "
        "AND s.sequence <= %(upto)s AND s.snapshot_at <= e.occurred_at)"
    )


def _json_number(column: str, key: str) -> str:
    if connection.vendor == "postgresql":
        return f"CAST({column} ->> '{key}' AS double precision)"
    return f"CAST(json_extract({column}, '$.{key}') AS REAL)"


def _json_text(column: str, key: str) -> str:
    if connection.vendor == "postgresql":
        return f"({column} ->> '{key}')"
    return f"json_extract({column}, '$.{key}')"


LABEL_MEASURES = ("active_seconds", "wall_seconds", "counted_seconds", "examples", "piece_pay", "hourly_pay", "pay",
                  "floor_amount", "client_amount", "floor_rate_weight")  # fmt: skip
NEW_MEASURES = ("active_seconds", "wall_seconds", "counted_seconds", "pay", "client_amount")
LABEL_SUMS = {
    "active_seconds": "SUM(e.active_seconds)",
    "wall_seconds": "SUM(e.wall_seconds)",
    "counted_seconds": "SUM(e.counted_seconds)",
    "examples": "SUM(e.units)",
    "piece_pay": f"SUM(e.amount) FILTER (WHERE {_line(Kind.PIECE_PAY)})",
    "hourly_pay": f"SUM(e.amount) FILTER (WHERE {_line(Kind.HOURLY_PAY)})",
    "pay": "SUM(e.amount)",
    "floor_amount": "SUM(e.floor_amount)",
    "client_amount": "SUM(e.client_amount)",
    "floor_rate_weight": FLOOR_RATE_WEIGHT,
}


def version_sql() -> str:
    """Per (model version, annotator): the labor embodied in the version's labels, what it added
    to its parent, and what the books held when its training set was read. One statement.

    Embodied labor of version v = the sum, over v and its ancestors u, of the ledger's entries on
    the labels u added minus those it dropped (labor_ledger_versionlabeldelta): exactly the
    labels of v's manifest, each once.

    Long because it is one statement (one snapshot, one plan): its CTEs read top to bottom in
    the order PostgreSQL evaluates them, and the column lists are built from the measures above
    rather than written out. Splitting it into several queries would read the ledger several
    times and join in Python."""
    signed = ", ".join(f"COALESCE({expr}, 0) AS {name}" for name, expr in LABEL_SUMS.items())
    labor = [f"SUM(sign * {m}) AS {m}" for m in LABEL_MEASURES]
    labor += [f"COALESCE(SUM({m}) FILTER (WHERE sign > 0), 0) AS new_{m}" for m in NEW_MEASURES]
    emb = ",\n".join(
        [
            "SUM(x.labels) AS labels",
            "SUM(x.human_labels) AS human_labels",
            *(f"COALESCE(SUM(y.{m}), 0) AS {m}" for m in LABEL_MEASURES),
        ]
    )
    recorded = [
        "COALESCE(SUM(p.active), 0) AS recorded_active_seconds",
        "COALESCE(SUM(p.wall), 0) AS recorded_wall_seconds",
        "COALESCE(SUM(p.active) FILTER (WHERE p.line = 'unpaid'), 0) AS recorded_unpaid_active_seconds",
        "COALESCE(SUM(p.wall) FILTER (WHERE p.line = 'unpaid'), 0) AS recorded_unpaid_wall_seconds",
    ]
    for c in CATEGORIES:
        recorded += [
            f"COALESCE(SUM(p.active) FILTER (WHERE p.time_category = '{c}'), 0) AS {c}_active_seconds",
            f"COALESCE(SUM(p.wall) FILTER (WHERE p.time_category = '{c}'), 0) AS {c}_wall_seconds",
            f"COALESCE(SUM(p.active) FILTER (WHERE p.time_category = '{c}' AND p.line = 'unpaid'), 0)"
            f" AS unpaid_{c}_active_seconds",
            f"COALESCE(SUM(p.wall) FILTER (WHERE p.time_category = '{c}' AND p.line = 'unpaid'), 0)"
            f" AS unpaid_{c}_wall_seconds",
        ]
    recorded_cols = [r.rsplit(" AS ", 1)[1] for r in recorded]
    emb_cols = ["labels", "human_labels", *LABEL_MEASURES]
    new_cols = ["new_labels", "dropped_labels", *(f"new_{m}" for m in NEW_MEASURES)]
    select = [
        "k.version_id",
        "k.annotator_id",
        *(f"COALESCE(em.{c}, 0) AS {c}" for c in emb_cols),
        *(f"COALESCE(dl.{c}, 0) AS {c}" for c in new_cols[:2]),
        *(f"COALESCE(lb.{c}, 0) AS {c}" for c in new_cols[2:]),
        *(f"COALESCE(rc.{c}, 0) AS {c}" for c in recorded_cols),
        *(f"{_allocated('COALESCE(em.counted_seconds, 0)', line)} AS allocated_{line}" for line in ALLOCATED_LINES),
        *(
            f"{_allocated('COALESCE(lb.new_counted_seconds, 0)', line)} AS new_allocated_{line}"
            for line in ALLOCATED_LINES
        ),
        f"{_allocated('COALESCE(em.counted_seconds, 0)', 'projected_top_up', 'pj')} AS allocated_projected_top_up",
        f"{_allocated('COALESCE(lb.new_counted_seconds, 0)', 'projected_top_up', 'pj')}"
        " AS new_allocated_projected_top_up",
    ]
    line = (
        f"CASE WHEN {_line(Kind.UNPAID_TIME)} THEN 'unpaid' WHEN {_line(Kind.FLOOR_TOP_UP)} THEN 'floor_top_up' "
        f"WHEN {_line(Kind.BONUS)} THEN 'bonus' WHEN {_line(Kind.ADJUSTMENT)} THEN 'adjustment' ELSE '' END"
    )
    scoped_versions = "SELECT id FROM training_modelversion WHERE project_id = %(project)s AND sequence <= %(upto)s"
    return f"""
    WITH RECURSIVE
    versions AS (
      SELECT mv.id, mv.sequence, mv.parent_id, mv.snapshot_at,
             ROW_NUMBER() OVER (ORDER BY mv.snapshot_at, mv.sequence) AS pos
      FROM training_modelversion mv
      WHERE mv.project_id = %(project)s AND mv.sequence <= %(upto)s
    ),
    ancestry (version_id, ancestor_id) AS (
      SELECT id, id FROM versions
      UNION ALL
      SELECT a.version_id, mv.parent_id FROM ancestry a
      JOIN training_modelversion mv ON mv.id = a.ancestor_id
      WHERE mv.parent_id IS NOT NULL
    ),
    delta_labels AS (
      SELECT d.version_id, d.annotator_id, SUM(d.sign) AS labels,
             SUM(CASE WHEN d.human THEN d.sign ELSE 0 END) AS human_labels,
             COUNT(*) FILTER (WHERE d.sign > 0) AS new_labels,
             COUNT(*) FILTER (WHERE d.sign < 0) AS dropped_labels
      FROM labor_ledger_versionlabeldelta d
      WHERE d.version_id IN ({scoped_versions})
      GROUP BY d.version_id, d.annotator_id
    ),
    delta_labor_signed AS (
      SELECT d.version_id, d.annotator_id, d.sign, {signed}
      FROM labor_ledger_versionlabeldelta d
      JOIN labor_ledger_ledgerentry e ON e.annotation_id = d.annotation_id
      {FLOOR_POLICY_JOIN}
      WHERE e.project_id = %(project)s AND d.version_id IN ({scoped_versions})
      GROUP BY d.version_id, d.annotator_id, d.sign
    ),
    delta_labor AS (
      SELECT version_id, annotator_id, {", ".join(labor)}
      FROM delta_labor_signed
      GROUP BY version_id, annotator_id
    ),
    embodied AS (
      SELECT an.version_id, x.annotator_id, {emb}
      FROM ancestry an
      JOIN delta_labels x ON x.version_id = an.ancestor_id
      LEFT JOIN delta_labor y ON y.version_id = x.version_id AND y.annotator_id = x.annotator_id
      GROUP BY an.version_id, x.annotator_id
    ),
    booked AS (
      SELECT {_bucket_sql()} AS bucket, e.annotator_id, e.time_category, {line} AS line,
             SUM(e.active_seconds) AS active, SUM(e.wall_seconds) AS wall,
             SUM(e.counted_seconds) AS counted, SUM(e.amount) AS amount
      FROM labor_ledger_ledgerentry e
      WHERE e.project_id = %(project)s
      GROUP BY 1, 2, 3, 4
    ),
    booked_by_bucket AS (
      SELECT p.bucket, {", ".join(recorded)}
      FROM booked p
      WHERE p.time_category <> ''
      GROUP BY p.bucket
    ),
    recorded AS (
      SELECT v.id AS version_id, CAST(NULL AS integer) AS annotator_id,
             {", ".join(f"SUM(b.{c}) AS {c}" for c in recorded_cols)}
      FROM versions v
      JOIN booked_by_bucket b ON b.bucket < v.pos
      GROUP BY v.id
    ),
    rates AS (
      SELECT p.annotator_id, SUM(p.counted) AS counted,
             COALESCE(SUM(p.amount) FILTER (WHERE p.line = 'floor_top_up'), 0) AS floor_top_up,
             COALESCE(SUM(p.amount) FILTER (WHERE p.line = 'bonus'), 0) AS bonus,
             COALESCE(SUM(p.amount) FILTER (WHERE p.line = 'adjustment'), 0) AS adjustment
      FROM booked p
      GROUP BY p.annotator_id
    ),{PROJECTED_CTE},
    keys AS (
      SELECT version_id, annotator_id FROM embodied
      UNION SELECT version_id, annotator_id FROM delta_labels
      UNION SELECT version_id, annotator_id FROM recorded
    )
    SELECT {", ".join(select)}
    FROM keys k
    LEFT JOIN embodied em ON em.version_id = k.version_id AND em.annotator_id = k.annotator_id
    LEFT JOIN delta_labels dl ON dl.version_id = k.version_id AND dl.annotator_id = k.annotator_id
    LEFT JOIN delta_labor lb ON lb.version_id = k.version_id AND lb.annotator_id = k.annotator_id
    LEFT JOIN recorded rc ON rc.version_id = k.version_id AND k.annotator_id IS NULL
    LEFT JOIN rates rt ON rt.annotator_id = k.annotator_id
    LEFT JOIN projected_by_annotator pj ON pj.annotator_id = k.annotator_id
    """  # noqa: S608 - constants of this module; values are bound parameters


# --- the per-version statement from stamped rows (labor_ledger/labor_summary.py) -----------------
#
# version_sql() above computes everything from the ledger on every report. A labor summary
# (models.LaborSummary, written when a version is registered) holds the same figures summed up to
# ledger entry #seq: per version, its delta rows (VersionDeltaSum), embodied rows
# (VersionEmbodiedSum) and recorded time (VersionRecordedSum); per annotator and period, the
# entries' sums (LedgerPeriodSum, chunk by chunk). The statement below reads those rows and adds
# only the entries appended after #seq (the "tail": new labels, reversals of old ones,
# adjustments, settlements' top-ups), with the same expressions as version_sql(): the same sums
# in the same numeric scales, so the report's figures are equal to the cent and the millisecond
# (tests/labor_ledger/test_reports_summary.py compares the two statements).
#
# The same CTEs roll a summary forward (labor_summary.py writes the next summary's rows from
# them): the reading and the writing cannot drift apart.

UNPAID = _line(Kind.UNPAID_TIME)
PERIOD_MEASURES = ("counted_seconds", "floor_top_up", "bonus", "adjustment", "amount", "floor_amount")
LINE_CASE = (
    f"CASE WHEN {_line(Kind.UNPAID_TIME)} THEN 'unpaid' WHEN {_line(Kind.FLOOR_TOP_UP)} THEN 'floor_top_up' "
    f"WHEN {_line(Kind.BONUS)} THEN 'bonus' WHEN {_line(Kind.ADJUSTMENT)} THEN 'adjustment' ELSE '' END"
)


def period_sums(alias: str = "e") -> str:
    """Per (annotator, period) group of entries: what rates and projected top-ups need."""
    e = alias
    line = LINE_CASE.replace("e.", f"{e}.")
    return f"""
        SUM({e}.counted_seconds) AS counted_seconds,
        COALESCE(SUM({e}.amount) FILTER (WHERE ({line}) = 'floor_top_up'), 0) AS floor_top_up,
        COALESCE(SUM({e}.amount) FILTER (WHERE ({line}) = 'bonus'), 0) AS bonus,
        COALESCE(SUM({e}.amount) FILTER (WHERE ({line}) = 'adjustment'), 0) AS adjustment,
        SUM({e}.amount) AS amount,
        SUM({e}.floor_amount) AS floor_amount"""


def _delta_labor(source: str, where: str) -> str:
    """CTE bodies: the ledger's entries in `source` (alias e) on the deltas of the versions
    `where` selects, signed and summed per (version, annotator) as version_sql's delta_labor."""
    signed = ", ".join(f"COALESCE({expr}, 0) AS {name}" for name, expr in LABEL_SUMS.items())
    labor = [f"SUM(sign * {m}) AS {m}" for m in LABEL_MEASURES]
    labor += [f"COALESCE(SUM({m}) FILTER (WHERE sign > 0), 0) AS new_{m}" for m in NEW_MEASURES]
    return f"""
    tail_signed AS (
      SELECT d.version_id, d.annotator_id, d.sign, {signed}
      FROM {source} e
      JOIN labor_ledger_versionlabeldelta d ON d.annotation_id = e.annotation_id
      {FLOOR_POLICY_JOIN}
      WHERE {where}
      GROUP BY d.version_id, d.annotator_id, d.sign
    ),
    tail_labor AS (
      SELECT version_id, annotator_id, {", ".join(labor)}
      FROM tail_signed
      GROUP BY version_id, annotator_id
    )"""  # noqa: S608 - constants of this module; values are bound parameters


DELTA_COLUMNS = ("labels", "human_labels", "new_labels", "dropped_labels")
EMBODIED_COLUMNS = ("labels", "human_labels")


def rolled_ctes() -> str:
    """CTEs (after WITH RECURSIVE): the rows of summary %(base)s for its versions up to sequence
    %(upto)s, rolled forward by the project's entries with %(after)s < seq <= %(through)s
    (%(after)s is the base summary's seq):

    scope, tail, tail_signed, tail_labor, ancestry, tail_embodied, delta_rows (version,
    annotator), embodied_rows (version, annotator), recorded_rows (version, time category,
    unpaid) and tail_periods (annotator, period)."""
    new = [f"new_{m}" for m in NEW_MEASURES]
    delta_cols = ", ".join(
        [*(f"b.{c}" for c in DELTA_COLUMNS), *(f"b.{m} + COALESCE(t.{m}, 0) AS {m}" for m in (*LABEL_MEASURES, *new))]
    )
    embodied_cols = ", ".join(
        [*(f"b.{c}" for c in EMBODIED_COLUMNS), *(f"b.{m} + COALESCE(t.{m}, 0) AS {m}" for m in LABEL_MEASURES)]
    )
    return f"""
    scope AS (
      SELECT s.version_id AS id, mv.parent_id, mv.snapshot_at
      FROM labor_ledger_versionlaborstamp s
      JOIN training_modelversion mv ON mv.id = s.version_id
      WHERE s.summary_id = %(base)s AND mv.sequence <= %(upto)s
    ),
    tail AS MATERIALIZED (
      SELECT e.* FROM labor_ledger_ledgerentry e
      WHERE e.project_id = %(project)s AND e.seq > %(after)s AND e.seq <= %(through)s
    ),
    {_delta_labor("tail", "d.version_id IN (SELECT id FROM scope)")},
    ancestry (version_id, ancestor_id) AS (
      SELECT id, id FROM scope
      UNION ALL
      SELECT a.version_id, mv.parent_id FROM ancestry a
      JOIN training_modelversion mv ON mv.id = a.ancestor_id
      WHERE mv.parent_id IS NOT NULL
    ),
    tail_embodied AS (
      SELECT an.version_id, t.annotator_id, {", ".join(f"SUM(t.{m}) AS {m}" for m in LABEL_MEASURES)}
      FROM ancestry an
      JOIN tail_labor t ON t.version_id = an.ancestor_id
      GROUP BY an.version_id, t.annotator_id
    ),
    delta_rows AS (
      SELECT b.version_id, b.annotator_id, {delta_cols}
      FROM labor_ledger_versiondeltasum b
      LEFT JOIN tail_labor t ON t.version_id = b.version_id AND t.annotator_id = b.annotator_id
      WHERE b.summary_id = %(base)s AND b.version_id IN (SELECT id FROM scope)
    ),
    embodied_rows AS (
      SELECT b.version_id, b.annotator_id, {embodied_cols}
      FROM labor_ledger_versionembodiedsum b
      LEFT JOIN tail_embodied t ON t.version_id = b.version_id AND t.annotator_id = b.annotator_id
      WHERE b.summary_id = %(base)s AND b.version_id IN (SELECT id FROM scope)
    ),
    recorded_rows AS (
      SELECT x.version_id, x.time_category, x.unpaid,
             SUM(x.active_seconds) AS active_seconds, SUM(x.wall_seconds) AS wall_seconds
      FROM (
        SELECT r.version_id, r.time_category, r.unpaid, r.active_seconds, r.wall_seconds
        FROM labor_ledger_versionrecordedsum r
        WHERE r.summary_id = %(base)s AND r.version_id IN (SELECT id FROM scope)
        UNION ALL
        SELECT v.id, e.time_category, {UNPAID}, e.active_seconds, e.wall_seconds
        FROM tail e JOIN scope v ON e.occurred_at < v.snapshot_at
        WHERE e.time_category <> ''
      ) x
      GROUP BY x.version_id, x.time_category, x.unpaid
    ),
    tail_periods AS (
      SELECT e.annotator_id, e.period_start, {period_sums()}
      FROM tail e
      GROUP BY e.annotator_id, e.period_start
    )"""  # noqa: S608 - constants of this module; values are bound parameters


def version_summary_sql() -> str:
    """version_sql()'s result, from summary %(base)s (at ledger #%(after)s) and the entries
    after it. Params: project, upto, base, after, through (2**63-1: every entry)."""
    recorded = [
        "COALESCE(SUM(p.active_seconds), 0) AS recorded_active_seconds",
        "COALESCE(SUM(p.wall_seconds), 0) AS recorded_wall_seconds",
        "COALESCE(SUM(p.active_seconds) FILTER (WHERE p.unpaid), 0) AS recorded_unpaid_active_seconds",
        "COALESCE(SUM(p.wall_seconds) FILTER (WHERE p.unpaid), 0) AS recorded_unpaid_wall_seconds",
    ]
    for c in CATEGORIES:
        recorded += [
            f"COALESCE(SUM(p.active_seconds) FILTER (WHERE p.time_category = '{c}'), 0) AS {c}_active_seconds",
            f"COALESCE(SUM(p.wall_seconds) FILTER (WHERE p.time_category = '{c}'), 0) AS {c}_wall_seconds",
            f"COALESCE(SUM(p.active_seconds) FILTER (WHERE p.time_category = '{c}' AND p.unpaid), 0)"
            f" AS unpaid_{c}_active_seconds",
            f"COALESCE(SUM(p.wall_seconds) FILTER (WHERE p.time_category = '{c}' AND p.unpaid), 0)"
            f" AS unpaid_{c}_wall_seconds",
        ]
    recorded_cols = [r.rsplit(" AS ", 1)[1] for r in recorded]
    emb_cols = ["labels", "human_labels", *LABEL_MEASURES]
    select = [
        "k.version_id",
        "k.annotator_id",
        *(f"COALESCE(em.{c}, 0) AS {c}" for c in emb_cols),
        "COALESCE(dl.new_labels, 0) AS new_labels",
        "COALESCE(dl.dropped_labels, 0) AS dropped_labels",
        *(f"COALESCE(dl.new_{m}, 0) AS new_{m}" for m in NEW_MEASURES),
        *(f"COALESCE(rc.{c}, 0) AS {c}" for c in recorded_cols),
        *(f"{_allocated('COALESCE(em.counted_seconds, 0)', line)} AS allocated_{line}" for line in ALLOCATED_LINES),
        *(
            f"{_allocated('COALESCE(dl.new_counted_seconds, 0)', line)} AS new_allocated_{line}"
            for line in ALLOCATED_LINES
        ),
        f"{_allocated('COALESCE(em.counted_seconds, 0)', 'projected_top_up', 'pj')} AS allocated_projected_top_up",
        f"{_allocated('COALESCE(dl.new_counted_seconds, 0)', 'projected_top_up', 'pj')}"
        " AS new_allocated_projected_top_up",
    ]
    periods = ", ".join(f"SUM(x.{m}) AS {m}" for m in PERIOD_MEASURES)
    chunk = ", ".join(f"c.{m}" for m in PERIOD_MEASURES)
    tail = ", ".join(f"t.{m}" for m in PERIOD_MEASURES)
    return f"""
    WITH RECURSIVE
    {rolled_ctes()},
    periods AS (
      SELECT x.annotator_id, x.period_start, {periods}
      FROM (
        SELECT c.annotator_id, c.period_start, {chunk}
        FROM labor_ledger_ledgerperiodsum c
        JOIN labor_ledger_laborsummary s ON s.id = c.summary_id
        WHERE s.project_id = %(project)s AND s.seq <= %(after)s
        UNION ALL
        SELECT t.annotator_id, t.period_start, {tail} FROM tail_periods t
      ) x
      GROUP BY x.annotator_id, x.period_start
    ),
    recorded AS (
      SELECT p.version_id, CAST(NULL AS integer) AS annotator_id, {", ".join(recorded)}
      FROM recorded_rows p
      GROUP BY p.version_id
    ),
    rates AS (
      SELECT p.annotator_id, SUM(p.counted_seconds) AS counted, SUM(p.floor_top_up) AS floor_top_up,
             SUM(p.bonus) AS bonus, SUM(p.adjustment) AS adjustment
      FROM periods p
      GROUP BY p.annotator_id
    ),
    projected AS (
      SELECT q.annotator_id, q.period_start,
             CASE WHEN q.target > q.gross THEN q.target - q.gross ELSE 0 END AS projected_top_up
      FROM (
        SELECT p.annotator_id, p.period_start, p.amount AS gross,
               CASE WHEN p.floor_amount > 0 THEN p.floor_amount ELSE 0 END AS target
        FROM periods p
        WHERE NOT EXISTS (
          SELECT 1 FROM labor_ledger_settlement s
          WHERE s.project_id = %(project)s AND s.annotator_id = p.annotator_id AND s.period = p.period_start)
      ) q
    ),
    projected_by_annotator AS (
      SELECT annotator_id, SUM(projected_top_up) AS projected_top_up FROM projected GROUP BY annotator_id
    ),
    keys AS (
      SELECT version_id, annotator_id FROM embodied_rows
      UNION SELECT version_id, annotator_id FROM delta_rows
      UNION SELECT version_id, annotator_id FROM recorded
    )
    SELECT {", ".join(select)}
    FROM keys k
    LEFT JOIN embodied_rows em ON em.version_id = k.version_id AND em.annotator_id = k.annotator_id
    LEFT JOIN delta_rows dl ON dl.version_id = k.version_id AND dl.annotator_id = k.annotator_id
    LEFT JOIN recorded rc ON rc.version_id = k.version_id AND k.annotator_id IS NULL
    LEFT JOIN rates rt ON rt.annotator_id = k.annotator_id
    LEFT JOIN projected_by_annotator pj ON pj.annotator_id = k.annotator_id
    """  # noqa: S608 - constants of this module; values are bound parameters


def versions_meta_sql() -> str:
    return f"""
    SELECT mv.id AS version_id, mv.sequence AS version, pv.sequence AS parent_version, mv.created_at AS trained_at,
           mv.snapshot_at, mv.kind AS model_kind, mv.loop, mv.manifest_hash, mv.n_examples, mv.n_annotations,
           mv.n_annotators, mv.device, mv.device_name, mv.training_seconds, mv.embedding_seconds,
           mv.pool_embedding_seconds, mv.scoring_seconds,
           {_json_number("mv.metrics", "accuracy")} AS accuracy,
           {_json_number("mv.metrics", "macro_f1")} AS macro_f1,
           {_json_number("mv.metrics", "eval_size")} AS eval_size,
           {_json_text("mv.metrics", "eval_source")} AS eval_source,
           {_json_text("mv.metrics", "eval_examples_hash")} AS eval_examples_hash
    FROM training_modelversion mv
    LEFT JOIN training_modelversion pv ON pv.id = mv.parent_id
    WHERE mv.project_id = %(project)s AND mv.sequence <= %(upto)s
    """  # noqa: S608 - constants of this module; values are bound parameters


# --- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerHead:
    seq: int
    hash: str

    def as_dict(self) -> dict:
        return {"seq": self.seq, "hash": self.hash}


def ledger_head(project: Project) -> LedgerHead:
    head = ChainHead.objects.filter(project=project).values_list("seq", "last_hash").first()
    return LedgerHead(*head) if head else LedgerHead(0, chain.GENESIS)


def ledger_checkpoint(project: Project) -> dict | None:
    """The project's latest signed checkpoint as every report and export names it (seq, time,
    key id) with the public key to check it (labor_ledger/checkpoints.py); None when none."""
    from labor_ledger import checkpoints

    latest = checkpoints.latest(project)
    if latest is None:
        return None
    published = {k["key_id"]: k["public_key"] for k in [checkpoints.published_key()] if k}
    return {**latest.as_dict(), "public_key": published.get(latest.key_id)}


def fetch_frame(sql: str, params: dict) -> pd.DataFrame:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        columns = [c[0] for c in cursor.description]
        return pd.DataFrame.from_records(cursor.fetchall(), columns=columns)


class consistent_read:  # noqa: N801 - a context manager used like a function
    """One transaction that sees one snapshot of the database (REPEATABLE READ on PostgreSQL;
    SQLite transactions are serializable): the chain head read inside it matches every query."""

    def __enter__(self):
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                if connection.in_atomic_block and len(connection.savepoint_ids) == 0:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute("SET LOCAL work_mem = '64MB'")
                cursor.execute("SET LOCAL jit = off")  # compiling these one-off plans costs more than it saves
        return self

    def __exit__(self, *exc):
        return self._atomic.__exit__(*exc)
