"""Readers for the public datasets in ../shared/datasets (benchmarks and integration tests)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

AG_NEWS_CLASSES = ("World", "Sports", "Business", "Sci/Tech")


def datasets_dir(base_dir: Path | None = None) -> Path:
    """TALLY_DATASETS_DIR, else ../shared/datasets beside the repository root."""
    if os.environ.get("TALLY_DATASETS_DIR"):
        return Path(os.environ["TALLY_DATASETS_DIR"])
    root = base_dir or Path(__file__).resolve().parent.parent.parent
    return root.parent / "shared" / "datasets"


def _clean_ag(field: str) -> str:
    # Newlines inside a field are written as a backslash and `n`; stray backslashes too.
    return " ".join(field.replace("\\n", " ").replace("\\", " ").split())


def read_ag_news(path: Path | None = None, limit: int | None = None) -> list[tuple[str, str]]:
    """[(label name, "title description"), ...] in file order."""
    path = path or datasets_dir() / "ag_news_test.csv"
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for cls, title, desc in csv.reader(fh):
            rows.append((AG_NEWS_CLASSES[int(cls) - 1], f"{_clean_ag(title)} {_clean_ag(desc)}"))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def read_sst2(path: Path | None = None, limit: int | None = None) -> list[tuple[str, str]]:
    path = path or datasets_dir() / "sst2_train.tsv"
    rows = []
    with open(path, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            sentence, _, label = line.rstrip("\n").rpartition("\t")
            rows.append(("positive" if label.strip() == "1" else "negative", sentence.strip()))
            if limit is not None and len(rows) >= limit:
                break
    return rows
