"""Import examples into a project from a CSV, TSV or JSONL file, with progress and a per-row report.

    python manage.py import_examples --project news demo/fixtures/ag_news_demo.csv \\
        --text-column text --label-column label
    python manage.py import_examples --project news ../shared/datasets/ag_news_test.csv \\
        --no-header --text-column 2,3 --label-column 1 \\
        --label-map 1=World,2=Sports,3=Business,4=Sci-Tech --unescape-backslashes

The file is read in place, streamed; the import is all or nothing (see docs/import.md).
"""

import os
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.imports import formats, jobs, rows, runs
from annotation.imports.progress import ImportProgress
from annotation.models import ImportBatch, Project
from core.errors import TallyError

# Seconds between two progress lines (on a terminal, one line is redrawn in place every 0.2 s).
PROGRESS_EVERY_SECONDS = 2.0


class Command(BaseCommand):
    help = "Import examples (texts, optional gold labels) into a project from a CSV, TSV or JSONL file."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path to the file (.csv, .tsv or .jsonl; or give --format).")
        parser.add_argument("--project", required=True, help="The project's slug.")
        parser.add_argument(
            "--format",
            dest="file_format",
            choices=ImportBatch.Format.values,
            help="csv, tsv or jsonl (default: from the file's extension).",
        )
        parser.add_argument(
            "--text-column",
            default="text",
            help="Column holding the text: a header name, or a 1-based position. Several, "
            "joined by commas, are joined into one text (title,description or 2,3). "
            "Default: text.",
        )
        parser.add_argument(
            "--label-column",
            default="",
            help="Optional column with gold labels (name or position), matched to the project's label names.",
        )
        parser.add_argument(
            "--no-header",
            action="store_true",
            help="The first line is data; give columns by position (1 is the first).",
        )
        parser.add_argument("--label-map", default="", help="Map raw label values to label names: 1=World,2=Sports,...")
        parser.add_argument(
            "--create-labels",
            action="store_true",
            help="Add labels the project does not have yet (default: such rows are skipped).",
        )
        parser.add_argument("--text-separator", default=" ", help="Put between joined text columns (default: a space).")
        parser.add_argument(
            "--unescape-backslashes",
            action="store_true",
            help="Decode AG News style backslashes: \\\\ is a line break, \\$ a dollar sign, "
            "any other backslash a wrapped line (a space).",
        )
        parser.add_argument("--encoding", default="utf-8", help="The file's text encoding (default: utf-8).")
        parser.add_argument(
            "--visible-columns",
            default="",
            help="Extra columns annotators may see, comma-separated (default: none; admins see every column).",
        )
        parser.add_argument("--user", default=None, help="Username recorded as the import's creator.")

    def handle(self, *args, **opts):
        path = Path(opts["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None:
            raise CommandError(f"No project with the slug {opts['project']!r}.")
        user = None
        if opts["user"]:
            user = get_user_model().objects.filter(username=opts["user"]).first()
            if user is None:
                raise CommandError(f"No user {opts['user']!r}.")
        try:
            options = formats.import_options(
                source_name=path.name,
                file_format=opts["file_format"] or "",
                text_column=opts["text_column"],
                label_column=opts["label_column"],
                has_header=not opts["no_header"],
                text_separator=opts["text_separator"],
                label_map=opts["label_map"],
                create_labels=opts["create_labels"],
                unescape_backslashes=opts["unescape_backslashes"],
                encoding=opts["encoding"],
                visible_columns=opts["visible_columns"],
            )
            with path.open("rb") as stream:
                rows.check_columns(stream=stream, options=options)
            batch, _ = jobs.import_batch_create(
                project=project, created_by=user, source_name=path.name, options=options
            )
        except TallyError as exc:
            raise CommandError(exc.message) from exc

        verbosity = opts["verbosity"]
        size = os.path.getsize(path)
        if verbosity:
            self.stdout.write(f"Importing {path} ({size:,} bytes) into project {project.slug!r} as import {batch.pk}")
        started = time.monotonic()
        with path.open("rb") as stream:
            batch = runs.import_run(
                batch=batch,
                stream=stream,
                bytes_total=size,
                on_progress=self._progress_printer() if verbosity else None,
            )
        self._summary(batch, time.monotonic() - started, verbosity)
        if batch.status != ImportBatch.Status.SUCCEEDED:
            raise CommandError(f"Import {batch.pk} failed: {batch.error}")

    def _progress_printer(self):
        tty = hasattr(self.stdout, "isatty") and self.stdout.isatty()
        last = {"at": 0.0}

        def show(progress: ImportProgress) -> None:
            if progress.status != ImportBatch.Status.RUNNING:
                if tty and last["at"]:
                    self.stdout.write("")
                return
            now = time.monotonic()
            if not progress.rows_read or now - last["at"] < (0.2 if tty else PROGRESS_EVERY_SECONDS):
                return
            last["at"] = now
            share = f"{progress.fraction:4.0%}" if progress.fraction is not None else "   ?"
            line = (
                f"  {share}  {progress.rows_read:,} rows read: {progress.rows_imported:,} new, "
                f"{progress.rows_duplicate:,} duplicate, {progress.rows_skipped:,} skipped"
            )
            if tty:
                self.stdout.write(f"\r{line}", ending="")
                self.stdout.flush()
            else:
                self.stdout.write(line)

        return show

    def _summary(self, batch: ImportBatch, seconds: float, verbosity: int) -> None:
        ok = batch.status == ImportBatch.Status.SUCCEEDED
        style = self.style.SUCCESS if ok else self.style.ERROR
        rate = batch.rows_read / seconds if seconds > 0 else 0
        self.stdout.write(
            style(f"Import {batch.pk} of {batch.source_name} {batch.status} in {seconds:.1f} s ({rate:,.0f} rows/s)")
        )
        self.stdout.write(
            f"  rows read {batch.rows_read:,}; imported {batch.rows_imported:,}; "
            f"duplicates {batch.rows_duplicate:,}; skipped {batch.rows_skipped:,}"
        )
        stats = batch.stats or {}
        if stats.get("labels_created"):
            self.stdout.write(f"  labels created: {', '.join(stats['labels_created'])}")
        if stats.get("reasons"):
            self.stdout.write("  by reason: " + ", ".join(f"{code} {n:,}" for code, n in stats["reasons"].items()))
        if not ok:
            self.stdout.write(self.style.ERROR(f"  error: {batch.error}"))
        if batch.report and verbosity:
            omitted = stats.get("report_omitted", 0)
            more = f" (and {omitted:,} more, counted above)" if omitted else ""
            self.stdout.write(f"Per-row report{more}:")
            for entry in batch.report:
                self.stdout.write(f"  row {entry['row']} (line {entry['line']}): {entry['code']}: {entry['reason']}")
