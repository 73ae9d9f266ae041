"""One-off backfill of the per-version labor index (labor_ledger/labor_index.py).

New model versions are indexed by the worker right after training registers them; this command
writes the index of versions registered before that (or whose indexing failed and was logged).
Idempotent: an indexed version is never computed again, and running it beside the worker is
safe (each version is indexed under its row lock). Then each project's labor summary
(labor_summary.py: the per-version report's stamped rows) is written, rolling the earlier
versions forward; versions indexed before summaries existed get theirs here."""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from annotation.models import Project
from labor_ledger import labor_index, labor_summary


class Command(BaseCommand):
    help = (
        "Write the labor index (label deltas per model version) of every model version that has none "
        "yet, in each project's version order; new versions are indexed by the worker when registered."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", help="project slug (default: every project with unindexed versions)")

    def handle(self, *args, project=None, **options):
        if project:
            found = Project.objects.filter(slug=project).first()
            if found is None:
                raise CommandError(f"No project with the slug {project!r}.")
            projects = [found]
        else:
            projects = list(
                Project.objects.filter(
                    Q(pk__in=labor_index.projects_with_unindexed()) | Q(pk__in=labor_summary.projects_unsummarized())
                ).order_by("pk")
            )
        total = summarized = 0
        started = time.perf_counter()
        for p in projects:

            def progress(done, count, sequence, slug=p.slug):
                self.stderr.write(f"{slug}: indexing the labels of model version {sequence} ({done + 1}/{count})")

            total += labor_index.versions_index(project_id=p.pk, progress=progress)
            # Then the labor figures the per-version report reads (labor_summary.py).
            if labor_summary.summarize(project_id=p.pk) is not None:
                summarized += 1
        self.stdout.write(
            f"Indexed {total} model version{'s' if total != 1 else ''} in {len(projects)} "
            f"project{'s' if len(projects) != 1 else ''}, summarized {summarized} "
            f"({time.perf_counter() - started:.2f} s)."
        )
