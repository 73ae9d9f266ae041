"""The console's door to annotation's import services (annotation/imports/)."""

from annotation.imports import formats, jobs, progress

FINISHED = progress.FINISHED


def options(**values):
    """The reading options of an upload (formats.import_options)."""
    return formats.import_options(**values)


def upload(*, project, created_by, upload, options):
    """Check the header, store the file and queue its import after commit: (batch, created)."""
    return jobs.import_upload(project=project, created_by=created_by, upload=upload, options=options)


def import_progress(*, batch) -> dict | None:
    """Live progress of a pending or running batch, or None."""
    return progress.import_progress(batch=batch)
