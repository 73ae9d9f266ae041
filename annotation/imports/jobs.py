"""Creating ImportBatch rows, and handing uploaded ones to the Celery worker.

`import_batch_create` makes a PENDING batch (idempotent with a key); `import_upload` is what
the API and the admin call with an uploaded file: check the header, store the file, and queue
`annotation.tasks.import_batch_task` after the commit. The command creates its batch here and
runs it itself (runs.import_run).
"""

from pathlib import PurePath

from django.conf import settings
from django.core.files import File
from django.db import IntegrityError, transaction

from annotation import tasks
from annotation.models import ImportBatch, Project
from core.errors import Conflict, ValidationFailed

from .formats import ImportOptions
from .rows import check_columns


@transaction.atomic
def import_batch_create(
    *,
    project: Project,
    created_by,
    source_name: str,
    options: ImportOptions,
    upload: File | None = None,
    idempotency_key: str | None = None,
) -> tuple[ImportBatch, bool]:
    """A PENDING batch (with its uploaded file saved to storage). With an idempotency key that
    was used before in this project, the earlier batch instead: returns (batch, created)."""
    source_name = PurePath(source_name).name[:255] or "upload"
    if idempotency_key:
        earlier = ImportBatch.objects.filter(project=project, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return _same_upload(earlier, source_name), False
    batch = ImportBatch(
        project=project,
        created_by=created_by,
        source_name=source_name,
        file_format=options.file_format,
        text_column=",".join(options.text_columns),
        label_column=options.label_column,
        options=options.to_json(),
        idempotency_key=idempotency_key or None,
    )
    batch.full_clean(exclude=["upload", "created_by", "idempotency_key"])
    try:
        with transaction.atomic():
            batch.save()
    except IntegrityError:  # the same key, at the same moment, from a retry in flight
        earlier = ImportBatch.objects.get(project=project, idempotency_key=idempotency_key)
        return _same_upload(earlier, source_name), False
    if upload is not None:
        batch.upload.save(source_name, upload, save=False)
        batch.save(update_fields=["upload"])
    return batch, True


def _same_upload(earlier: ImportBatch, source_name: str) -> ImportBatch:
    if earlier.source_name != source_name:
        raise Conflict(
            f"This Idempotency-Key was already used for {earlier.source_name!r} (import {earlier.pk}).",
            code="key_reused",
        )
    return earlier


def import_upload(
    *,
    project: Project,
    created_by,
    upload: File,
    options: ImportOptions,
    idempotency_key: str | None = None,
) -> tuple[ImportBatch, bool]:
    """Web and API uploads: check the header, store the file, queue the import after commit."""
    if idempotency_key:
        earlier = ImportBatch.objects.filter(project=project, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return _same_upload(earlier, PurePath(upload.name or "").name[:255] or "upload"), False
    max_bytes = settings.TALLY_MAX_UPLOAD_BYTES
    if upload.size is not None and upload.size > max_bytes:
        raise ValidationFailed(
            f"The file has {upload.size:,} bytes; the limit is {max_bytes:,} (TALLY_MAX_UPLOAD_BYTES).",
            code="file_too_large",
        )
    upload.seek(0)
    check_columns(stream=upload, options=options)
    upload.seek(0)
    with transaction.atomic():
        batch, created = import_batch_create(
            project=project,
            created_by=created_by,
            source_name=upload.name or "upload",
            options=options,
            upload=upload,
            idempotency_key=idempotency_key,
        )
        if created:
            transaction.on_commit(lambda: tasks.import_batch_task.delay(batch.pk))
    return batch, created
