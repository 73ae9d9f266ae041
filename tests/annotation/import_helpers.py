"""Shared helpers of the import tests (tests/annotation/test_import*.py)."""

import io
import os
from pathlib import Path

from annotation.imports import formats, jobs, runs

ROOT = Path(__file__).resolve().parents[2]
AG_NEWS_LABELS = ("World", "Sports", "Business", "Sci-Tech")
AG_NEWS_MAP = "1=World,2=Sports,3=Business,4=Sci-Tech"


def datasets_dir() -> Path:
    """../shared/datasets beside the checkout, or TALLY_DATASETS_DIR."""
    return Path(os.environ.get("TALLY_DATASETS_DIR", ROOT.parent / "shared" / "datasets"))


def run_import(project, content: bytes, name: str = "data.csv", *, on_progress=None, **options):
    """Create a batch for `content` and import it synchronously; returns the finished batch."""
    opts = formats.import_options(source_name=name, **options)
    batch, created = jobs.import_batch_create(project=project, created_by=None, source_name=name, options=opts)
    assert created
    return runs.import_run(batch=batch, stream=io.BytesIO(content), bytes_total=len(content), on_progress=on_progress)


def codes(batch) -> list[tuple[int, str]]:
    return [(entry["row"], entry["code"]) for entry in batch.report]
