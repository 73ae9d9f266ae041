import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from labor_ledger.labor_index import VersionNotIndexed
from labor_ledger.pseudonyms import PseudonymKeyMissing, pseudonym_key
from labor_ledger.reports import build, writers


class Command(BaseCommand):
    help = (
        "Write a labor report of a project: the ledger per model version (default), per annotator, per "
        "period or for the whole project, optionally scoped to one model version's training labels, as "
        "CSV, Parquet or JSON. Every report names the ledger chain head it was computed from. Only "
        "reads: a per-version report of versions not indexed yet fails and says so (labor_index_backfill)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument(
            "--model-version",
            type=int,
            dest="model_version",
            help="a model version's sequence number: only the labels it was trained on",
        )
        parser.add_argument("--by", choices=build.BY_CHOICES, default="version", help="grouping (default: version)")
        parser.add_argument("--format", choices=writers.FORMATS, required=True, dest="file_format")
        parser.add_argument("--out", required=True, help="file to write, or - for standard output (csv, json)")
        parser.add_argument(
            "--pseudonymize",
            action="store_true",
            help="annotators as keyed pseudonyms (needs TALLY_PSEUDONYM_KEY); no names or emails",
        )

    def handle(self, *args, project, model_version, by, file_format, out, pseudonymize, **options):
        found = Project.objects.filter(slug=project).first()
        if found is None:
            raise CommandError(f"No project with the slug {project!r}.")
        if out == "-" and file_format == "parquet":
            raise CommandError("Parquet is binary: write it to a file with --out FILE.")
        started = time.perf_counter()
        try:
            if pseudonymize:
                pseudonym_key()  # no work at all without a key
            report = build.labor_report(project=found, by=by, version=model_version, pseudonymize=pseudonymize)
            data = writers.render(report, file_format)
        except VersionNotIndexed as exc:
            raise CommandError(exc.message) from exc
        except (build.ReportError, PseudonymKeyMissing) as exc:
            raise CommandError(str(exc)) from exc
        if out == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return
        path = Path(out)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc}") from exc
        self.stderr.write(
            f"{path}: labor by {by} of {found.slug}"
            + (f" v{model_version}" if model_version is not None else "")
            + f", {len(report.frame)} rows, {len(data):,} bytes, ledger head #{report.head.seq} {report.head.hash}"
            + f" ({time.perf_counter() - started:.2f} s)"
        )
