"""Labor reports and the Labor Card, split by job:

- `build`: `labor_report()` and the `Report` it returns (what each grouping holds),
- `sql`: the statements, and reading them in one snapshot with the ledger's chain head,
- `frames`: pandas frames and aggregation (exact Decimals, allocated pay, wages),
- `writers`: CSV, Parquet and JSON files,
- `card`: the Labor Card of one model version,
- `columns`: the column lists and decimal places they share.

Everything here only reads; the per-version labor index and labor summary it needs are written
when a version is registered (labor_ledger/labor_index.py, labor_ledger/labor_summary.py).
docs/labor-card.md.
"""
