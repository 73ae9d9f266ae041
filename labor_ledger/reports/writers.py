"""Writing a report: CSV (spreadsheet-safe cells, RFC 4180 line ends), Parquet (exact decimal
types, the report's metadata in the schema) or JSON. Each names the ledger chain head."""

from __future__ import annotations

import io
import json
import math
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pandas as pd

from core.spreadsheet import csv_safe_frame

from .build import Report, ReportError
from .columns import COMPUTE_SECONDS, MONEY_COLUMNS, RATE_COLUMNS

FORMATS = ("csv", "parquet", "json")


def _with_head(report: Report) -> pd.DataFrame:
    frame = report.frame.copy()
    frame["currency"] = report.currency
    frame["ledger_head_seq"] = report.head.seq
    frame["ledger_head_hash"] = report.head.hash
    cp = report.checkpoint or {}
    frame["ledger_checkpoint_seq"] = cp.get("seq")
    frame["ledger_checkpoint_at"] = cp.get("at")
    frame["ledger_checkpoint_key_id"] = cp.get("key_id")
    return frame


def to_csv(report: Report) -> bytes:
    frame = csv_safe_frame(_with_head(report))
    # RFC 4180 line ends: a cell holding a CR or LF is then always quoted.
    return frame.to_csv(index=False, lineterminator="\r\n").encode("utf-8")


def _arrow_type(column: str, series: pd.Series):
    import pyarrow as pa

    if column == "ledger_checkpoint_seq":
        return pa.int64()
    if column in ("ledger_checkpoint_at", "ledger_checkpoint_key_id"):
        return pa.string()
    if column in ("ledger_head_seq",) or str(series.dtype) in ("int64", "Int64"):
        return pa.int64()
    if str(series.dtype) == "bool":
        return pa.bool_()
    if column.endswith("_seconds") and column not in COMPUTE_SECONDS:
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
    if value is pd.NaT or value is pd.NA:
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
