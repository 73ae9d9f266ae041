"""Running one batch, all or nothing: claim it, read, build and write every row in one
transaction, and record on the batch row how it ended.

`import_run` is called by the command, the benchmarks and the tests with a stream in hand;
`import_batch_run` is the Celery task's entry point (annotation.tasks), which opens the upload.
"""

import io
import logging
from typing import IO

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from annotation import hooks, welfare
from annotation.models import ImportBatch, Project
from core.errors import TallyError

from .copy import write_chunk
from .errors import ImportFailed, RowSkipped
from .formats import READ_BUFFER_BYTES, CountingReader, ImportOptions, read_records
from .progress import FINISHED, ImportRun, ProgressCallback
from .rows import Labels, Row, RowBuilder

logger = logging.getLogger(__name__)

SQLITE_CACHE_KIB = 64 * 1024


def import_batch_run(*, batch_id: int) -> ImportBatch | None:
    """The worker's entry point: import an uploaded batch from storage."""
    batch = ImportBatch.objects.filter(pk=batch_id).first()
    if batch is None or batch.status in FINISHED:
        return batch
    if not batch.upload:
        run = ImportRun(batch, None, None)
        _mark_failed(batch, run, ImportFailed("The uploaded file is missing from storage."))
        return batch
    try:
        stream = batch.upload.open("rb")
    except OSError as exc:
        run = ImportRun(batch, None, None)
        _mark_failed(batch, run, ImportFailed(f"Cannot open the uploaded file: {exc}."))
        return batch
    with stream:
        return import_run(batch=batch, stream=stream, bytes_total=batch.upload.size)


class _AlreadyRunning(Exception):  # noqa: N818
    pass


def import_run(
    *,
    batch: ImportBatch,
    stream: IO[bytes],
    bytes_total: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> ImportBatch:
    """Import the batch's file from `stream`, all or nothing. Returns the batch, SUCCEEDED or
    FAILED (with `error`); never half-written. A finished batch is returned as it is, and a
    batch another process is importing right now is left to it."""
    now = timezone.now()
    claimed = ImportBatch.objects.filter(pk=batch.pk, status=ImportBatch.Status.PENDING).update(
        status=ImportBatch.Status.RUNNING, started_at=now
    )
    batch.refresh_from_db()
    if not claimed and batch.status != ImportBatch.Status.RUNNING:
        return batch  # already finished
    # RUNNING without our claim: a redelivered task whose worker died (its transaction was
    # rolled back) -- or a live import, which the row lock below tells apart.
    run = ImportRun(batch, bytes_total, on_progress)
    try:
        options = ImportOptions.from_json(batch.options or {"file_format": batch.file_format})
        with transaction.atomic():
            try:
                ImportBatch.objects.select_for_update(nowait=True).filter(pk=batch.pk).get()
            except DatabaseError as exc:
                raise _AlreadyRunning from exc
            run.publish(ImportBatch.Status.RUNNING)  # only now: a live import's progress is not reset
            # One import per project at a time, so "one query per chunk" sees every duplicate.
            # NO KEY UPDATE: annotators' claims (rows pointing at the project) are not blocked.
            project = Project.objects.select_for_update(no_key=True).get(pk=batch.project_id)
            if connection.vendor == "sqlite":
                # SQLite's default page cache (2 MiB) is far smaller than a large project's
                # (project, text_hash) index: probing and growing it would read pages all day.
                with connection.cursor() as cursor:
                    cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            _import_rows(run, project, stream, options)
            _mark_succeeded(batch, run)
    except _AlreadyRunning:
        logger.info("Import %s is running in another process; leaving it there", batch.pk)
        return batch
    except BaseException as exc:  # noqa: B036 -- record any failure (Ctrl-C included), then decide
        _mark_failed(batch, run, exc)
        if not isinstance(exc, Exception):
            raise
        return batch
    run.publish(ImportBatch.Status.SUCCEEDED)
    _discard_upload(batch)
    if batch.rows_imported:  # committed: training orders the new pool (its cold start)
        hooks.examples_imported.send(
            hooks.ExamplesImported(project_id=batch.project_id, batch_id=batch.pk, rows_imported=batch.rows_imported)
        )
    return batch


def _mark_succeeded(batch: ImportBatch, run: ImportRun) -> None:
    """Inside the import's transaction: the batch's final counts, committed with its rows, and
    the extra columns this import lets annotators see."""
    shown = ImportOptions.from_json(batch.options).visible_columns
    if shown:
        project = Project.objects.select_for_update().get(pk=batch.project_id)
        project.annotator_meta_columns = list(dict.fromkeys([*project.annotator_meta_columns, *shown]))
        project.save(update_fields=["annotator_meta_columns"])
    welfare.marks_from_import(project_id=batch.project_id, batch_id=batch.pk)  # commits with the rows
    batch.status = ImportBatch.Status.SUCCEEDED
    batch.rows_read = run.progress.rows_read
    batch.rows_imported = run.progress.rows_imported
    batch.rows_duplicate = run.progress.rows_duplicate
    batch.rows_skipped = run.progress.rows_skipped
    batch.report = run.report
    batch.stats = run.stats()
    batch.error = ""
    batch.finished_at = timezone.now()
    batch.save(
        update_fields=[
            "status",
            "rows_read",
            "rows_imported",
            "rows_duplicate",
            "rows_skipped",
            "report",
            "stats",
            "error",
            "finished_at",
        ]
    )


def _mark_failed(batch: ImportBatch, run: ImportRun, exc: BaseException) -> None:
    """After the rollback: the batch says what happened, and that nothing was imported."""
    if isinstance(exc, TallyError):
        error = exc.message
    elif isinstance(exc, KeyboardInterrupt):
        error = "Interrupted."
    else:
        logger.exception("Import %s failed", batch.pk)
        error = f"{type(exc).__name__}: {exc}".strip()[:2000]
    batch.status = ImportBatch.Status.FAILED
    batch.error = f"{error} Nothing was imported."
    batch.rows_read = run.progress.rows_read
    batch.rows_imported = 0
    batch.rows_duplicate = run.progress.rows_duplicate
    batch.rows_skipped = run.progress.rows_skipped
    batch.report = run.report
    batch.stats = run.stats()
    batch.finished_at = timezone.now()
    batch.save(
        update_fields=[
            "status",
            "error",
            "rows_read",
            "rows_imported",
            "rows_duplicate",
            "rows_skipped",
            "report",
            "stats",
            "finished_at",
        ]
    )
    run.progress.rows_imported = 0
    run.publish(ImportBatch.Status.FAILED)
    _discard_upload(batch)


def _discard_upload(batch: ImportBatch) -> None:
    if batch.upload:
        try:
            batch.upload.delete(save=False)
        except OSError:
            logger.warning("Could not delete the upload of import %s", batch.pk, exc_info=True)
        ImportBatch.objects.filter(pk=batch.pk).update(upload="")


def _import_rows(run: ImportRun, project: Project, stream: IO[bytes], options: ImportOptions) -> None:
    """Read, build and write every row of `stream`: the body of the import's transaction."""
    run.counter = CountingReader(stream)
    buffered = io.BufferedReader(run.counter, buffer_size=READ_BUFFER_BYTES)
    header, records = read_records(buffered, options)
    labels = Labels(project, options)
    builder = RowBuilder(options, header, labels)
    chunk_rows = settings.TALLY_IMPORT_CHUNK_ROWS
    pending: list[Row] = []
    progress = run.progress
    next_publish = chunk_rows
    for record in records:
        progress.rows_read += 1
        try:
            if record.skip is not None:
                raise record.skip
            pending.append(builder.build(record))
        except RowSkipped as skipped:
            run.note(record.row, record.line, skipped.code, skipped.reason)
        if len(pending) >= chunk_rows:
            write_chunk(run, project, pending)
            pending = []
        if progress.rows_read >= next_publish:
            next_publish += chunk_rows
            run.publish()
    write_chunk(run, project, pending)
    run.labels_created = labels.created
