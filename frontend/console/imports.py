"""The console's one door to the import services.

annotation's import code is being moved from annotation/importers.py into an
annotation/imports/ package; the console calls it only through these three functions, so the
move changes this file and nothing else in frontend/."""

from annotation import importers


def options(**values):
    """The reading options of an upload (importers.import_options)."""
    return importers.import_options(**values)


def upload(*, project, created_by, upload, options):
    """Check the header, store the file and queue its import after commit: (batch, created)."""
    return importers.import_upload(project=project, created_by=created_by, upload=upload, options=options)


def progress(*, batch) -> dict | None:
    """Live progress of a pending or running batch, or None."""
    return importers.import_progress(batch=batch)


FINISHED = importers.FINISHED
