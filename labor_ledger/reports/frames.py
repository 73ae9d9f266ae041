"""pandas frames from the reports' queries: exact Decimals, derived columns (allocated pay,
hours, effective wages and their percentiles), sums per group and the per-version frame that
the version report and the Labor Card share."""

from __future__ import annotations

import math
from decimal import Decimal

import pandas as pd

from annotation.models import Project
from labor_ledger import labor_index, labor_summary, money

from .columns import (
    ALLOCATED_LINES,
    COMPUTE_SECONDS,
    HOURS_PLACES,
    MONEY_COLUMNS,
    MONEY_PLACES,
    RATE_WEIGHT_PLACES,
    SECONDS_PLACES,
    SUMMED,
    TOTALED,
    VERSION_SUMMED,
)
from .sql import (
    LedgerHead,
    consistent_read,
    fetch_frame,
    ledger_head,
    version_sql,
    version_summary_sql,
    versions_meta_sql,
)

EVERY_ENTRY = 2**63 - 1


def _dec(value, places: Decimal) -> Decimal:
    """An exact Decimal at `places` from what the database returned (Decimal on PostgreSQL; a
    float or int on SQLite, whose decimal columns are not exact)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Decimal(0).quantize(places)
    if not isinstance(value, Decimal):
        value = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return value.quantize(places)


def as_decimal(frame: pd.DataFrame, columns, places: Decimal) -> None:
    for column in columns:
        if column in frame.columns:
            frame[column] = frame[column].map(lambda v, p=places: _dec(v, p)).astype(object)


def ratio(numerator: pd.Series, denominator: pd.Series, *, scale: Decimal = Decimal(1)) -> pd.Series:
    """numerator * scale / denominator as Decimals (6 places), None where the denominator is 0."""
    return pd.Series(
        [
            (n * scale / d).quantize(MONEY_PLACES) if d else None
            for n, d in zip(numerator.tolist(), denominator.tolist(), strict=True)
        ],
        index=numerator.index,
        dtype=object,
    )


def add_hours(frame: pd.DataFrame, seconds_column: str, hours_column: str) -> None:
    frame[hours_column] = frame[seconds_column].map(lambda s: (s / money.SECONDS_PER_HOUR).quantize(HOURS_PLACES))


def derive(frame: pd.DataFrame) -> None:
    """Columns every per-annotator or per-group frame gets from its sums."""
    frame["allocated_pay"] = (
        frame["allocated_floor_top_up"] + frame["allocated_bonus"] + frame["allocated_adjustment"]
    ).astype(object)
    frame["direct_pay"] = frame["pay"]
    frame["pay"] = (frame["direct_pay"] + frame["allocated_pay"]).astype(object)
    for line in ALLOCATED_LINES:
        frame[line] = (frame[line] + frame[f"allocated_{line}"]).astype(object)
    frame["pay_before_top_up"] = (frame["pay"] - frame["floor_top_up"]).astype(object)
    frame["projected_top_up"] = (frame["projected_top_up"] + frame["allocated_projected_top_up"]).astype(object)
    add_hours(frame, "active_seconds", "active_hours")
    add_hours(frame, "wall_seconds", "wall_hours")
    add_hours(frame, "counted_seconds", "hours_worked")
    rates(frame)


def rates(frame: pd.DataFrame) -> None:
    """The wage bill (pay booked, and top-ups projected for periods not settled yet) and the
    rates derived from sums: the effective hourly wage (the wage bill per hour worked), the floor
    rate (from the policies in force, exact: sum of counted seconds x rate over counted seconds)
    and the share of the client's price that reached annotators."""
    frame["wage_bill"] = (frame["pay"] + frame["projected_top_up"]).astype(object)
    frame["effective_hourly_wage"] = ratio(frame["wage_bill"], frame["counted_seconds"], scale=money.SECONDS_PER_HOUR)
    frame["floor_hourly_rate"] = ratio(frame["floor_rate_weight"], frame["counted_seconds"])
    frame["client_share"] = ratio(frame["wage_bill"], frame["client_amount"])


def wage_stats(per_annotator: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
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


def sum_by(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    columns = [c for c in columns if c in frame.columns]
    if not keys:
        out = pd.DataFrame([{c: frame[c].sum() if len(frame) else 0 for c in columns}])
    else:
        out = frame.groupby(keys, sort=True)[columns].sum().reset_index()
    for c in columns:  # an empty object column sums to int 0; keep Decimals Decimal
        if c not in ("labels", "human_labels", "examples", "entries"):
            out[c] = out[c].map(lambda v: v if isinstance(v, Decimal) else Decimal(v)).astype(object)
    return out


def column_totals(frame: pd.DataFrame, *, by: str) -> dict | None:
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


def group_rows(raw: pd.DataFrame, *, keys: list[str]) -> pd.DataFrame:
    """Rows of a report by period (keys ["period"]) or of the whole project (no keys) from the
    per-(group, annotator) frame: the sums, how many annotators, hours, rates and wage spread."""
    summed = sum_by(raw, keys, SUMMED)
    summed["annotators"] = (
        raw.groupby(keys)["annotator_id"].nunique().values if keys else [raw["annotator_id"].nunique()]
    )
    summed["annotators"] = summed["annotators"].astype("int64")
    add_hours(summed, "active_seconds", "active_hours")
    add_hours(summed, "wall_seconds", "wall_hours")
    add_hours(summed, "counted_seconds", "hours_worked")
    rates(summed)
    stats = wage_stats(raw, keys)
    frame = summed.merge(stats, on=keys, how="left") if keys else pd.concat([summed, stats], axis=1)
    frame["annotators_worked"] = frame["annotators_worked"].fillna(0).astype("int64")
    frame["below_floor_before_top_up"] = frame["below_floor_before_top_up"].fillna(0).astype("int64")
    return frame


INTEGER_META = ("version", "parent_version", "n_examples", "n_annotations", "n_annotators", "eval_size")


# --- per model version --------------------------------------------------------------------------


def versions_frame(project: Project, *, upto: int | None = None) -> tuple[LedgerHead, pd.DataFrame, pd.DataFrame]:
    """The per-(version, annotator) frame for versions 1..upto (all when None), the versions'
    metadata, and the chain head they were read at. Two statements in one snapshot: the labor
    query, and the versions' own columns (at most one row per version)."""
    params = {"project": project.pk, "upto": upto if upto is not None else 2**31 - 1}
    with consistent_read():
        # In the snapshot the figures are read from: a version registered meanwhile is checked too.
        labor_index.require_indexed(project=project, upto=upto)
        head = ledger_head(project)
        summary = labor_summary.latest(project_id=project.pk, upto=upto)
        if summary is not None:  # the stamped rows, and the entries appended after them
            raw = fetch_frame(version_summary_sql(), {**params, "base": summary.pk, "after": summary.seq,
                                                      "through": EVERY_ENTRY})  # fmt: skip
        else:  # versions not summarized yet (registered before summaries existed), or SQLite
            raw = fetch_frame(version_sql(), params)
        meta = fetch_frame(versions_meta_sql(), params)
    as_decimal(raw, [c for c in raw.columns if c.endswith("_seconds")], SECONDS_PLACES)
    as_decimal(
        raw,
        [c for c in raw.columns if c in MONEY_COLUMNS or c.startswith(("new_allocated", "allocated"))],
        MONEY_PLACES,
    )
    as_decimal(raw, ["floor_rate_weight"], RATE_WEIGHT_PLACES)
    for c in ("labels", "human_labels", "examples", "new_labels", "dropped_labels"):
        raw[c] = raw[c].astype("int64")
    raw["projected_top_up"] = Decimal(0).quantize(MONEY_PLACES)
    raw["floor_top_up"] = Decimal(0)
    raw["bonus"] = Decimal(0)
    raw["adjustment"] = Decimal(0)
    raw["unpaid_active_seconds"] = Decimal(0).quantize(SECONDS_PLACES)
    raw["unpaid_wall_seconds"] = Decimal(0).quantize(SECONDS_PLACES)
    for c in ("floor_top_up", "bonus", "adjustment", "projected_top_up"):
        raw[c] = raw[c].astype(object)
    derive(raw)
    raw["new_wage_bill"] = (
        raw["new_pay"]
        + raw["new_allocated_floor_top_up"]
        + raw["new_allocated_bonus"]
        + raw["new_allocated_adjustment"]
        + raw["new_allocated_projected_top_up"]
    ).astype(object)
    return head, raw, meta


def version_rows(raw: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """One row per model version from the per-(version, annotator) frame."""
    summed = sum_by(raw, ["version_id"], VERSION_SUMMED)
    for c in ("labels", "human_labels", "examples", "new_labels", "dropped_labels"):
        summed[c] = summed[c].astype("int64")
    contributors = raw[raw["labels"] > 0]
    stats = wage_stats(contributors, ["version_id"])
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
    # Counts that may be missing (no parent, no evaluation) as nullable integers, not floats.
    for c in INTEGER_META:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").round().astype("Int64")
    as_decimal(
        frame,
        [c for c in frame.columns if c.endswith("_seconds") and c not in COMPUTE_SECONDS],
        SECONDS_PLACES,
    )
    add_hours(frame, "active_seconds", "active_hours")
    add_hours(frame, "wall_seconds", "wall_hours")
    add_hours(frame, "counted_seconds", "hours_worked")
    add_hours(frame, "new_active_seconds", "new_active_hours")
    add_hours(frame, "recorded_active_seconds", "recorded_active_hours")
    rates(frame)
    # Increment over the parent: accuracy change per new labor-hour and per new unit of currency.
    accuracies = dict(zip(frame["version"], frame["accuracy"], strict=True))
    parent_accuracy = pd.Series(
        [accuracies.get(int(p)) if pd.notna(p) else None for p in frame["parent_version"]],
        index=frame.index,
        dtype="float64",
    )
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
