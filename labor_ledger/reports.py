"""Labor reports for auditors: the ledger grouped per model version, annotator, period or
project, each built with pandas from ONE SQL query (never a Python loop over ledger rows), and
written as CSV, Parquet or JSON.

Every figure comes from the ledger's own entries (labor_ledger_ledgerentry), so totals equal the
ledger's sums: a report by annotator adds up to the sum of all entries, and to the balances.
Each report names the chain head (seq, hash) it was computed from: the query and the head are
read in one REPEATABLE READ transaction, so two auditors holding reports with the same head read
the same books.

Model versions (training.ModelVersion) pin the annotations they were trained on
(training.ManifestEntry). The labor *embodied* in a version is what the ledger holds on those
annotations: the time of the attempts behind them and the pay for them, each annotation counted
once however many versions reused it. Money that the ledger books per annotator and period
rather than per label (floor top-ups, bonuses, adjustments) is *allocated* to a version at the
annotator's average rate per hour worked: an annotator's top-ups divided by all their hours
worked in the project, times their hours worked on the version's labels. docs/labor-card.md.

The per-version report does not scan each version's manifest against the ledger (for 50
versions of up to a million labels that is ~25 million joined rows): it compares each
version's manifest with its parent's (an ordered merge on the manifest's unique index), joins
only the labels added or dropped to the ledger, and sums those deltas along each version's
chain of ancestors.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import Project
from core.spreadsheet import csv_safe_frame

from . import chain, money
from .models import ChainHead, LedgerEntry, TimeCategory

Kind = LedgerEntry.Kind
BY_CHOICES = ("version", "annotator", "period", "project")
FORMATS = ("csv", "parquet", "json")
CATEGORIES = [c.value for c in TimeCategory]
ALLOCATED_LINES = ("floor_top_up", "bonus", "adjustment")
MONEY_PLACES = Decimal("0.000001")
HOURS_PLACES = Decimal("0.000001")
SECONDS_PLACES = Decimal("0.001")
REPORT_FORMAT_VERSION = 1


class ReportError(ValueError):
    """A report that cannot be made as asked (unknown grouping, version, format)."""


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


def _allocated(counted: str, line: str) -> str:
    return f"CASE WHEN rt.counted > 0 THEN ROUND({counted} * rt.{line} / rt.counted, 6) ELSE 0 END"


def _grouped_sql(*, by: str, scoped: bool) -> str:
    """Entries per (group, annotator); with a version, only those on the version's labels, plus
    the allocated lines. One statement."""
    group = {"annotator": "", "period": "e.period_start AS period, ", "project": ""}[by]
    group_by = {"annotator": "", "period": "e.period_start, ", "project": ""}[by]
    scope = (
        " AND e.annotation_id IN"
        " (SELECT m.annotation_id FROM training_manifestentry m WHERE m.version_id = %(version)s)"
        if scoped
        else ""
    )
    labels = "COUNT(DISTINCT e.annotation_id) AS labels," if scoped else "0 AS labels,"
    if scoped:
        allocated = ", ".join(
            f"{_allocated('g.counted_seconds', line)} AS allocated_{line}" for line in ALLOCATED_LINES
        )
        rates, rates_join = f"{RATES_CTE},", "LEFT JOIN rates rt ON rt.annotator_id = g.annotator_id"
    else:
        allocated = ", ".join(f"0 AS allocated_{line}" for line in ALLOCATED_LINES)
        rates, rates_join = "", ""
    topped_up = (
        "(SELECT COUNT(*) FROM labor_ledger_settlement s WHERE s.project_id = %(project)s "
        "AND s.annotator_id = g.annotator_id AND s.top_up > 0) AS periods_topped_up"
    )
    return f"""
    WITH {rates}
    grouped AS (
      SELECT {group}e.annotator_id, {labels} {_ledger_sums()}
      FROM labor_ledger_ledgerentry e
      WHERE e.project_id = %(project)s{scope}
      GROUP BY {group_by}e.annotator_id
    )
    SELECT g.*, u.username AS username, {allocated}, {topped_up}
    FROM grouped g
    JOIN auth_user u ON u.id = g.annotator_id
    {rates_join}
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
                  "floor_amount", "client_amount")  # fmt: skip
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
}


def _version_sql() -> str:
    """Per (model version, annotator): the labor embodied in the version's labels, what it added
    to its parent, and what the books held when its training set was read. One statement.

    Embodied labor of version v = the sum, over v and its ancestors u, of the ledger's entries on
    the labels u added minus those it dropped (labor_ledger_versionlabeldelta): exactly the
    labels of v's manifest, each once."""
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
    ),
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
    """  # noqa: S608 - constants of this module; values are bound parameters


def _versions_meta_sql() -> str:
    return f"""
    SELECT mv.id AS version_id, mv.sequence AS version, pv.sequence AS parent_version, mv.created_at AS trained_at,
           mv.snapshot_at, mv.kind AS model_kind, mv.loop, mv.manifest_hash, mv.n_examples, mv.n_annotations,
           mv.n_annotators, mv.device, mv.device_name, mv.training_seconds, mv.embedding_seconds, mv.scoring_seconds,
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


def _frame(sql: str, params: dict) -> pd.DataFrame:
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


# --- shaping -----------------------------------------------------------------------------------

MONEY_COLUMNS = [
    "piece_pay",
    "hourly_pay",
    "floor_top_up",
    "bonus",
    "adjustment",
    "pay",
    "direct_pay",
    "allocated_pay",
    "floor_amount",
    "client_amount",
    "pay_before_top_up",
    *(f"allocated_{line}" for line in ALLOCATED_LINES),
    "new_pay",
    "new_client_amount",
    "new_wage_bill",
    *(f"new_allocated_{line}" for line in ALLOCATED_LINES),
]
RATE_COLUMNS = ["effective_hourly_wage", "floor_hourly_rate", "wage_p10", "wage_median", "wage_p90", "client_share"]


def _dec(value, places: Decimal) -> Decimal:
    """An exact Decimal at `places` from what the database returned (Decimal on PostgreSQL; a
    float or int on SQLite, whose decimal columns are not exact)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Decimal(0).quantize(places)
    if not isinstance(value, Decimal):
        value = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return value.quantize(places)


def _as_decimal(frame: pd.DataFrame, columns, places: Decimal) -> None:
    for column in columns:
        if column in frame.columns:
            frame[column] = frame[column].map(lambda v, p=places: _dec(v, p)).astype(object)


def _ratio(numerator: pd.Series, denominator: pd.Series, *, scale: Decimal = Decimal(1)) -> pd.Series:
    """numerator * scale / denominator as Decimals (6 places), None where the denominator is 0."""
    return pd.Series(
        [
            (n * scale / d).quantize(MONEY_PLACES) if d else None
            for n, d in zip(numerator.tolist(), denominator.tolist(), strict=True)
        ],
        index=numerator.index,
        dtype=object,
    )


def _hours(frame: pd.DataFrame, seconds_column: str, hours_column: str) -> None:
    frame[hours_column] = frame[seconds_column].map(lambda s: (s / money.SECONDS_PER_HOUR).quantize(HOURS_PLACES))


def _derive(frame: pd.DataFrame) -> None:
    """Columns every per-annotator or per-group frame gets from its sums."""
    frame["allocated_pay"] = (
        frame["allocated_floor_top_up"] + frame["allocated_bonus"] + frame["allocated_adjustment"]
    ).astype(object)
    frame["direct_pay"] = frame["pay"]
    frame["pay"] = (frame["direct_pay"] + frame["allocated_pay"]).astype(object)
    for line in ALLOCATED_LINES:
        frame[line] = (frame[line] + frame[f"allocated_{line}"]).astype(object)
    frame["pay_before_top_up"] = (frame["pay"] - frame["floor_top_up"]).astype(object)
    _hours(frame, "active_seconds", "active_hours")
    _hours(frame, "wall_seconds", "wall_hours")
    _hours(frame, "counted_seconds", "hours_worked")
    frame["effective_hourly_wage"] = _ratio(frame["pay"], frame["counted_seconds"], scale=money.SECONDS_PER_HOUR)
    frame["floor_hourly_rate"] = _ratio(frame["floor_amount"], frame["counted_seconds"], scale=money.SECONDS_PER_HOUR)
    frame["client_share"] = _ratio(frame["pay"], frame["client_amount"])


def _wage_stats(per_annotator: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group: how many annotators worked counted hours, the 10th/50th/90th percentile of
    their effective hourly wage (linear interpolation), and how many were paid less than the
    floor for their hours before top-ups."""
    worked = per_annotator[per_annotator["counted_seconds"] > 0].copy()
    worked["wage"] = worked["effective_hourly_wage"].astype(float)
    worked["below"] = (worked["pay_before_top_up"] < worked["floor_amount"]).astype(int)
    grouped = worked.groupby(keys) if keys else worked.assign(_all=0).groupby("_all")
    stats = grouped.agg(
        annotators_worked=("annotator_id", "nunique"),
        below_floor_before_top_up=("below", "sum"),
    )
    quantiles = grouped["wage"].quantile([0.1, 0.5, 0.9]).unstack() if len(worked) else None
    for q, name in ((0.1, "wage_p10"), (0.5, "wage_median"), (0.9, "wage_p90")):
        if quantiles is None:
            stats[name] = pd.Series(dtype=object)
        else:
            stats[name] = quantiles[q].map(lambda x: None if pd.isna(x) else Decimal(repr(round(x, 6))))
    return stats.reset_index()


SUMMED = [
    "labels",
    "human_labels",
    "active_seconds",
    "wall_seconds",
    "counted_seconds",
    "unpaid_active_seconds",
    "unpaid_wall_seconds",
    "examples",
    "piece_pay",
    "hourly_pay",
    "floor_top_up",
    "bonus",
    "adjustment",
    "pay",
    "direct_pay",
    "allocated_pay",
    "pay_before_top_up",
    "floor_amount",
    "client_amount",
    "entries",
    *(f"allocated_{line}" for line in ALLOCATED_LINES),
]


def _sum_by(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    columns = [c for c in columns if c in frame.columns]
    if not keys:
        out = pd.DataFrame([{c: frame[c].sum() if len(frame) else 0 for c in columns}])
    else:
        out = frame.groupby(keys, sort=True)[columns].sum().reset_index()
    for c in columns:  # an empty object column sums to int 0; keep Decimals Decimal
        if c not in ("labels", "human_labels", "examples", "entries"):
            out[c] = out[c].map(lambda v: v if isinstance(v, Decimal) else Decimal(v)).astype(object)
    return out


# --- the reports -------------------------------------------------------------------------------


@dataclass
class Report:
    kind: str
    project: Project
    head: LedgerHead
    frame: pd.DataFrame
    generated_at: datetime
    version: int | None = None
    pseudonymized: bool = False
    totals: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def currency(self) -> str:
        return self.project.currency

    @property
    def filename_stem(self) -> str:
        scope = f"-v{self.version}" if self.version is not None else ""
        return f"{self.project.slug}-labor{scope}-by-{self.kind}"

    def metadata(self) -> dict:
        return {
            "report": f"labor by {self.kind}",
            "format_version": REPORT_FORMAT_VERSION,
            "project": self.project.slug,
            "model_version": self.version,
            "currency": self.currency,
            "ledger_head": self.head.as_dict(),
            "generated_at": self.generated_at.isoformat(),
            "pseudonymized": self.pseudonymized,
            "notes": self.notes,
        }


def _identity(frame: pd.DataFrame, *, pseudonymize: bool) -> pd.DataFrame:
    """Annotators by username, or by keyed pseudonym (then no id, name or email at all)."""
    from .pseudonyms import pseudonym_map

    if pseudonymize:
        names = pseudonym_map(frame["annotator_id"].unique().tolist())
        frame.insert(0, "annotator", frame["annotator_id"].map(names))
        return frame.drop(columns=["annotator_id", "username"], errors="ignore")
    frame.insert(0, "annotator", frame.pop("username"))
    return frame


def _resolve_version(project: Project, version: int | None):
    if version is None:
        return None
    from training.models import ModelVersion

    found = ModelVersion.objects.filter(project=project, sequence=version).first()
    if found is None:
        raise ReportError(f"Project {project.slug} has no model version {version}.")
    return found


def _grouped_report(project: Project, *, by: str, version: int | None, pseudonymize: bool) -> Report:
    mv = _resolve_version(project, version)
    params = {"project": project.pk, "version": mv.pk if mv else None}
    with consistent_read():
        head = ledger_head(project)
        raw = _frame(_grouped_sql(by=by, scoped=mv is not None), params)
    generated = timezone.now()
    _as_decimal(raw, [c for c in raw.columns if c.endswith("_seconds")], SECONDS_PLACES)
    _as_decimal(raw, [c for c in raw.columns if c in MONEY_COLUMNS], MONEY_PLACES)
    for c in ("labels", "examples", "entries", "periods_topped_up"):
        raw[c] = raw[c].astype("int64")
    _derive(raw)
    notes = []
    if mv is not None:
        notes.append(
            f"Scope: the {mv.n_annotations} labels model version {mv.sequence} was trained on. Floor top-ups, "
            "bonuses and adjustments are allocated to it at each annotator's average rate per hour worked "
            "(allocated_* columns); direct_pay is what the ledger booked on its labels."
        )
    if by == "annotator":
        raw["below_floor_before_top_up"] = (raw["counted_seconds"] > 0) & (
            raw["pay_before_top_up"] < raw["floor_amount"]
        )
        frame = raw.sort_values("username").reset_index(drop=True)
        frame = _identity(frame, pseudonymize=pseudonymize)
        order = ["annotator", *(["annotator_id"] if not pseudonymize else [])]
        frame = frame[order + [c for c in ANNOTATOR_COLUMNS if c not in order]]
    else:
        keys = ["period"] if by == "period" else []
        summed = _sum_by(raw, keys, SUMMED)
        summed["annotators"] = (
            raw.groupby(keys)["annotator_id"].nunique().values if keys else [raw["annotator_id"].nunique()]
        )
        summed["annotators"] = summed["annotators"].astype("int64")
        _hours(summed, "active_seconds", "active_hours")
        _hours(summed, "wall_seconds", "wall_hours")
        _hours(summed, "counted_seconds", "hours_worked")
        summed["effective_hourly_wage"] = _ratio(summed["pay"], summed["counted_seconds"], scale=money.SECONDS_PER_HOUR)
        summed["floor_hourly_rate"] = _ratio(
            summed["floor_amount"], summed["counted_seconds"], scale=money.SECONDS_PER_HOUR
        )
        summed["client_share"] = _ratio(summed["pay"], summed["client_amount"])
        stats = _wage_stats(raw, keys)
        frame = summed.merge(stats, on=keys, how="left") if keys else pd.concat([summed, stats], axis=1)
        frame["annotators_worked"] = frame["annotators_worked"].fillna(0).astype("int64")
        frame["below_floor_before_top_up"] = frame["below_floor_before_top_up"].fillna(0).astype("int64")
        if by == "period":
            frame["period"] = pd.to_datetime(frame["period"]).dt.date
            frame = frame.sort_values("period").reset_index(drop=True)
        else:
            frame.insert(0, "project", project.slug)
        lead = ["period"] if by == "period" else ["project"]
        frame = frame[lead + GROUP_COLUMNS]
        if len(frame) == 1 and by == "project" and not len(raw):
            frame = frame.iloc[0:0]
    report = Report(
        kind=by,
        project=project,
        head=head,
        frame=frame,
        generated_at=generated,
        version=mv.sequence if mv else None,
        pseudonymized=pseudonymize and by == "annotator",
        notes=notes,
    )
    report.totals = _totals(frame, by=by)
    return report


ANNOTATOR_COLUMNS = [
    "labels",
    "examples",
    "active_seconds",
    "wall_seconds",
    "counted_seconds",
    "active_hours",
    "wall_hours",
    "hours_worked",
    "unpaid_active_seconds",
    "unpaid_wall_seconds",
    "piece_pay",
    "hourly_pay",
    "floor_top_up",
    "bonus",
    "adjustment",
    "pay",
    "direct_pay",
    "allocated_pay",
    "pay_before_top_up",
    "floor_amount",
    "client_amount",
    "effective_hourly_wage",
    "floor_hourly_rate",
    "below_floor_before_top_up",
    "periods_topped_up",
    "client_share",
    "entries",
]
GROUP_COLUMNS = [
    "annotators",
    "labels",
    "examples",
    "active_seconds",
    "wall_seconds",
    "counted_seconds",
    "active_hours",
    "wall_hours",
    "hours_worked",
    "unpaid_active_seconds",
    "unpaid_wall_seconds",
    "piece_pay",
    "hourly_pay",
    "floor_top_up",
    "bonus",
    "adjustment",
    "pay",
    "direct_pay",
    "allocated_pay",
    "pay_before_top_up",
    "floor_amount",
    "client_amount",
    "effective_hourly_wage",
    "floor_hourly_rate",
    "annotators_worked",
    "wage_p10",
    "wage_median",
    "wage_p90",
    "below_floor_before_top_up",
    "client_share",
    "entries",
]
TOTALED = [
    "labels",
    "examples",
    "active_seconds",
    "wall_seconds",
    "counted_seconds",
    "unpaid_active_seconds",
    "unpaid_wall_seconds",
    "piece_pay",
    "hourly_pay",
    "floor_top_up",
    "bonus",
    "adjustment",
    "pay",
    "direct_pay",
    "allocated_pay",
    "floor_amount",
    "client_amount",
    "entries",
]


def _totals(frame: pd.DataFrame, *, by: str) -> dict | None:
    """Column sums of a report whose rows partition the ledger (annotator, period, project).
    A version report has none: versions share labels, their rows do not add up."""
    if by == "version":
        return None
    out = {}
    for column in TOTALED:
        if column in frame.columns:
            values = frame[column].tolist()
            out[column] = (
                sum(values, Decimal(0))
                if column.endswith(("_seconds", "pay", "_pay", "_amount", "_up", "bonus", "adjustment"))
                else int(sum(values))
            )
    return out


# --- per model version --------------------------------------------------------------------------


def versions_frame(project: Project, *, upto: int | None = None) -> tuple[LedgerHead, pd.DataFrame, pd.DataFrame]:
    """The per-(version, annotator) frame for versions 1..upto (all when None), the versions'
    metadata, and the chain head they were read at. Two statements in one snapshot: the labor
    query, and the versions' own columns (at most one row per version)."""
    from .services import version_labor_index_ensure

    version_labor_index_ensure(project=project, upto=upto)  # once per version, ever: manifests never change
    params = {"project": project.pk, "upto": upto if upto is not None else 2**31 - 1}
    with consistent_read():
        head = ledger_head(project)
        raw = _frame(_version_sql(), params)
        meta = _frame(_versions_meta_sql(), params)
    _as_decimal(raw, [c for c in raw.columns if c.endswith("_seconds")], SECONDS_PLACES)
    _as_decimal(
        raw,
        [c for c in raw.columns if c in MONEY_COLUMNS or c.startswith(("new_allocated", "allocated"))],
        MONEY_PLACES,
    )
    for c in ("labels", "human_labels", "examples", "new_labels", "dropped_labels"):
        raw[c] = raw[c].astype("int64")
    raw["floor_top_up"] = Decimal(0)
    raw["bonus"] = Decimal(0)
    raw["adjustment"] = Decimal(0)
    raw["unpaid_active_seconds"] = Decimal(0).quantize(SECONDS_PLACES)
    raw["unpaid_wall_seconds"] = Decimal(0).quantize(SECONDS_PLACES)
    for c in ("floor_top_up", "bonus", "adjustment"):
        raw[c] = raw[c].astype(object)
    _derive(raw)
    raw["new_wage_bill"] = (
        raw["new_pay"]
        + raw["new_allocated_floor_top_up"]
        + raw["new_allocated_bonus"]
        + raw["new_allocated_adjustment"]
    ).astype(object)
    return head, raw, meta


VERSION_META = [
    "version",
    "parent_version",
    "trained_at",
    "snapshot_at",
    "model_kind",
    "loop",
    "manifest_hash",
    "n_examples",
    "n_annotations",
    "n_annotators",
    "accuracy",
    "macro_f1",
    "eval_size",
    "eval_source",
    "device",
    "device_name",
    "training_seconds",
    "embedding_seconds",
    "scoring_seconds",
]
VERSION_SUMMED = [
    "labels",
    "human_labels",
    "examples",
    "active_seconds",
    "wall_seconds",
    "counted_seconds",
    "piece_pay",
    "hourly_pay",
    "floor_top_up",
    "bonus",
    "adjustment",
    "pay",
    "direct_pay",
    "allocated_pay",
    "pay_before_top_up",
    "floor_amount",
    "client_amount",
    "new_labels",
    "dropped_labels",
    "new_active_seconds",
    "new_wall_seconds",
    "new_counted_seconds",
    "new_wage_bill",
    "recorded_active_seconds",
    "recorded_wall_seconds",
    "recorded_unpaid_active_seconds",
    "recorded_unpaid_wall_seconds",
    *(f"{c}_{clock}_seconds" for c in CATEGORIES for clock in ("active", "wall")),
    *(f"unpaid_{c}_{clock}_seconds" for c in CATEGORIES for clock in ("active", "wall")),
]


def version_rows(raw: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """One row per model version from the per-(version, annotator) frame."""
    summed = _sum_by(raw, ["version_id"], VERSION_SUMMED)
    for c in ("labels", "human_labels", "examples", "new_labels", "dropped_labels"):
        summed[c] = summed[c].astype("int64")
    contributors = raw[raw["labels"] > 0]
    stats = _wage_stats(contributors, ["version_id"])
    frame = meta.merge(summed, on="version_id", how="left").merge(stats, on="version_id", how="left")
    frame = frame.sort_values("version").reset_index(drop=True)
    for c in summed.columns:
        if c != "version_id":
            frame[c] = frame[c].map(
                lambda v: Decimal(0) if v is None or (isinstance(v, float) and math.isnan(v)) else v
            )
    for c in ("labels", "human_labels", "examples", "new_labels", "dropped_labels"):
        frame[c] = frame[c].astype("int64")
    for c in ("annotators_worked", "below_floor_before_top_up"):
        frame[c] = frame[c].fillna(0).astype("int64")
    _as_decimal(
        frame,
        [
            c
            for c in frame.columns
            if c.endswith("_seconds") and c not in ("training_seconds", "embedding_seconds", "scoring_seconds")
        ],
        SECONDS_PLACES,
    )
    _hours(frame, "active_seconds", "active_hours")
    _hours(frame, "wall_seconds", "wall_hours")
    _hours(frame, "counted_seconds", "hours_worked")
    _hours(frame, "new_active_seconds", "new_active_hours")
    _hours(frame, "recorded_active_seconds", "recorded_active_hours")
    frame["effective_hourly_wage"] = _ratio(frame["pay"], frame["counted_seconds"], scale=money.SECONDS_PER_HOUR)
    frame["floor_hourly_rate"] = _ratio(frame["floor_amount"], frame["counted_seconds"], scale=money.SECONDS_PER_HOUR)
    frame["client_share"] = _ratio(frame["pay"], frame["client_amount"])
    # Increment over the parent: accuracy change per new labor-hour and per new unit of currency.
    parent_accuracy = frame["parent_version"].map(dict(zip(frame["version"], frame["accuracy"], strict=True)))
    frame["parent_accuracy"] = parent_accuracy
    frame["accuracy_change"] = frame["accuracy"] - parent_accuracy
    new_hours = frame["new_active_seconds"].astype(float) / 3600
    new_money = frame["new_wage_bill"].astype(float)
    change = frame["accuracy_change"].astype(float)
    frame["accuracy_change_per_labor_hour"] = (change / new_hours.where(new_hours > 0)).astype(float)
    frame["accuracy_change_per_currency_unit"] = (change / new_money.where(new_money > 0)).astype(float)
    # Held-out accuracies compare only on the same evaluation texts (training records their hash).
    hashes = dict(zip(frame["version"], frame["eval_examples_hash"], strict=True))

    def same_set(version, parent):
        if pd.isna(parent) or not isinstance(hashes.get(version), str) or not isinstance(hashes.get(int(parent)), str):
            return None  # no parent, or a hash was not recorded
        return hashes[version] == hashes[int(parent)]

    frame["same_evaluation_set_as_parent"] = [
        same_set(v, p) for v, p in zip(frame["version"], frame["parent_version"], strict=True)
    ]
    return frame


VERSION_COLUMNS = [
    *VERSION_META,
    "labels",
    "human_labels",
    "examples",
    "active_seconds",
    "wall_seconds",
    "counted_seconds",
    "active_hours",
    "wall_hours",
    "hours_worked",
    "piece_pay",
    "hourly_pay",
    "floor_top_up",
    "bonus",
    "adjustment",
    "pay",
    "direct_pay",
    "allocated_pay",
    "pay_before_top_up",
    "floor_amount",
    "client_amount",
    "effective_hourly_wage",
    "floor_hourly_rate",
    "annotators_worked",
    "wage_p10",
    "wage_median",
    "wage_p90",
    "below_floor_before_top_up",
    "client_share",
    "new_labels",
    "dropped_labels",
    "new_active_seconds",
    "new_wall_seconds",
    "new_counted_seconds",
    "new_active_hours",
    "new_wage_bill",
    "parent_accuracy",
    "accuracy_change",
    "accuracy_change_per_labor_hour",
    "accuracy_change_per_currency_unit",
    "same_evaluation_set_as_parent",
    "recorded_active_seconds",
    "recorded_wall_seconds",
    "recorded_active_hours",
    "recorded_unpaid_active_seconds",
    "recorded_unpaid_wall_seconds",
    *(f"{c}_{clock}_seconds" for c in CATEGORIES for clock in ("active", "wall")),
    *(f"unpaid_{c}_{clock}_seconds" for c in CATEGORIES for clock in ("active", "wall")),
]


def _version_report(project: Project, *, version: int | None) -> Report:
    mv = _resolve_version(project, version)
    head, raw, meta = versions_frame(project, upto=mv.sequence if mv else None)
    generated = timezone.now()
    frame = version_rows(raw, meta)
    if mv is not None:
        frame = frame[frame["version"] == mv.sequence].reset_index(drop=True)
    frame = frame[VERSION_COLUMNS]
    notes = [
        "Each row is the labor embodied in one model version: the ledger's entries on the labels it was "
        "trained on, each label counted once. Versions share labels, so rows do not add up across versions.",
        "Floor top-ups, bonuses and adjustments are allocated at each annotator's average rate per hour worked.",
        "recorded_* and <category>_* columns: all time on the books before the version's training set was read.",
    ]
    return Report(kind="version", project=project, head=head, frame=frame, generated_at=generated,
                  version=mv.sequence if mv else None, notes=notes)  # fmt: skip


def labor_report(
    *, project: Project, by: str = "version", version: int | None = None, pseudonymize: bool = False
) -> Report:
    """The labor report of a project grouped `by` version, annotator, period or project,
    optionally scoped to one model version's labels, optionally pseudonymized."""
    if by not in BY_CHOICES:
        raise ReportError(f"Group by one of: {', '.join(BY_CHOICES)}.")
    if pseudonymize:
        from .pseudonyms import pseudonym_key

        pseudonym_key()  # fail before any work when no key is configured
    if by == "version":
        return _version_report(project, version=version)
    return _grouped_report(project, by=by, version=version, pseudonymize=pseudonymize)


# --- writing -----------------------------------------------------------------------------------


def _with_head(report: Report) -> pd.DataFrame:
    frame = report.frame.copy()
    frame["currency"] = report.currency
    frame["ledger_head_seq"] = report.head.seq
    frame["ledger_head_hash"] = report.head.hash
    return frame


def to_csv(report: Report) -> bytes:
    frame = csv_safe_frame(_with_head(report))
    # RFC 4180 line ends: a cell holding a CR or LF is then always quoted.
    return frame.to_csv(index=False, lineterminator="\r\n").encode("utf-8")


def _arrow_type(column: str, series: pd.Series):
    import pyarrow as pa

    if column in ("ledger_head_seq",) or str(series.dtype) in ("int64", "Int64"):
        return pa.int64()
    if str(series.dtype) == "bool":
        return pa.bool_()
    if column.endswith("_seconds") and column not in ("training_seconds", "embedding_seconds", "scoring_seconds"):
        return pa.decimal128(20, 3)
    if column.endswith("_hours") or column == "hours_worked":
        return pa.decimal128(20, 6)
    if column in MONEY_COLUMNS or column in RATE_COLUMNS:
        return pa.decimal128(24, 6)
    if column in ("trained_at", "snapshot_at"):
        return pa.timestamp("us", tz="UTC")
    if column == "period":
        return pa.date32()
    return None  # let pyarrow infer (text, floats, booleans)


def to_parquet(report: Report) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = _with_head(report)
    fields = []
    for column in frame.columns:
        kind = _arrow_type(column, frame[column])
        if kind is None:
            kind = pa.Array.from_pandas(frame[column]).type
            if kind == pa.null():
                kind = pa.string()
        fields.append(pa.field(column, kind))
    schema = pa.schema(fields, metadata={b"tally.report": json.dumps(report.metadata()).encode()})
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"tally.report": json.dumps(report.metadata()).encode()}
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _jsonable(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT:
        return None
    return value


def to_json(report: Report) -> bytes:
    rows = [{k: _jsonable(v) for k, v in row.items()} for row in report.frame.to_dict("records")]
    payload = {
        **report.metadata(),
        "columns": list(report.frame.columns),
        "rows": rows,
        "totals": {k: _jsonable(v) for k, v in report.totals.items()} if report.totals is not None else None,
    }
    return json.dumps(payload, ensure_ascii=False, indent=1).encode("utf-8")


WRITERS = {"csv": to_csv, "parquet": to_parquet, "json": to_json}
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "json": "application/json",
}


def render(report: Report, file_format: str) -> bytes:
    if file_format not in WRITERS:
        raise ReportError(f"Write one of: {', '.join(FORMATS)}.")
    return WRITERS[file_format](report)
