"""An import's counters, its capped per-row report and its live progress.

An ImportRun is written by the running import (runs, and copy for duplicates) and publishes
ImportProgress to the Django cache, because the rows stay invisible to others until the commit;
`import_progress` reads it back for the API and the admin.
"""

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from annotation.models import ImportBatch

from .errors import Skip
from .formats import CountingReader

logger = logging.getLogger(__name__)

FINISHED = (ImportBatch.Status.SUCCEEDED, ImportBatch.Status.FAILED)


def progress_key(batch_id: int) -> str:
    """The cache key of a batch's live progress."""
    return f"import-progress:{batch_id}"


@dataclass
class ImportProgress:
    """What a running import has done so far, as published to the cache and to `on_progress`."""

    batch_id: int
    status: str
    rows_read: int = 0
    rows_imported: int = 0  # inserted so far, not yet committed
    rows_duplicate: int = 0
    rows_skipped: int = 0
    bytes_read: int = 0
    bytes_total: int | None = None
    updated_at: str = ""

    @property
    def fraction(self) -> float | None:
        if not self.bytes_total:
            return None
        return min(self.bytes_read / self.bytes_total, 1.0)


ProgressCallback = Callable[[ImportProgress], None]


class ImportRun:
    """The counters and the capped report of one running import."""

    def __init__(self, batch: ImportBatch, bytes_total: int | None, on_progress: ProgressCallback | None):
        self.batch = batch
        self.progress = ImportProgress(batch_id=batch.pk, status=ImportBatch.Status.RUNNING, bytes_total=bytes_total)
        self.on_progress = on_progress
        self.report: list[dict] = []
        self.reasons: Counter[str] = Counter()
        self.report_limit = settings.TALLY_IMPORT_REPORT_LIMIT
        self.counter: CountingReader | None = None
        self.started = time.monotonic()
        self.labels_created: list[str] = []

    def note(self, row: int, line: int, code: str, reason: str, **extra) -> None:
        self.reasons[code] += 1
        if code in Skip.DUPLICATES:
            self.progress.rows_duplicate += 1
        else:
            self.progress.rows_skipped += 1
        if len(self.report) < self.report_limit:
            self.report.append({"row": row, "line": line, "code": code, "reason": reason, **extra})

    def publish(self, status: str | None = None) -> None:
        progress = self.progress
        if status:
            progress.status = status
        if self.counter is not None:
            progress.bytes_read = self.counter.bytes_read
        progress.updated_at = timezone.now().isoformat()
        try:
            cache.set(progress_key(progress.batch_id), asdict(progress), settings.TALLY_IMPORT_PROGRESS_TTL_SECONDS)
        except Exception:  # progress is best effort: a cache outage must not fail the import
            logger.warning("Could not publish progress of import %s", progress.batch_id, exc_info=True)
        if self.on_progress is not None:
            self.on_progress(progress)

    def stats(self) -> dict:
        seconds = time.monotonic() - self.started
        return {
            "reasons": dict(sorted(self.reasons.items())),
            "report_omitted": max(sum(self.reasons.values()) - len(self.report), 0),
            "bytes_read": self.counter.bytes_read if self.counter is not None else self.progress.bytes_read,
            "bytes_total": self.progress.bytes_total,
            "seconds": round(seconds, 3),
            "rows_per_second": round(self.progress.rows_read / seconds, 1) if seconds > 0 else None,
            "labels_created": self.labels_created,
        }


# --- reading progress ------------------------------------------------------------------------


def import_progress(*, batch: ImportBatch) -> dict | None:
    """Live progress of a PENDING/RUNNING batch from the cache (the DB row has only its final
    counts): rows and bytes read, fraction done, and whether it has stalled."""
    if batch.status in FINISHED:
        return None
    try:
        data = cache.get(progress_key(batch.pk))
    except Exception:
        logger.warning("Could not read progress of import %s", batch.pk, exc_info=True)
        data = None
    if not data:
        return None
    progress = ImportProgress(**data)
    updated = datetime.fromisoformat(progress.updated_at) if progress.updated_at else None
    stalled = bool(updated and (timezone.now() - updated).total_seconds() > settings.TALLY_IMPORT_STALL_SECONDS)
    return {**data, "fraction": progress.fraction, "stalled": stalled}
