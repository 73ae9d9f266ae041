from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from labor_ledger import selectors
from labor_ledger.models import ChainHead, LedgerEntry


class Command(BaseCommand):
    help = (
        "Recompute every project's ledger hash chain, balances and settlements from its entries and "
        "report any break. Exits non-zero when something does not verify."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", help="project slug (default: every project with a ledger)")

    def handle(self, *args, project=None, **options):
        if project:
            projects = list(Project.objects.filter(slug=project))
            if not projects:
                raise CommandError(f"No project with the slug {project!r}.")
        else:
            with_ledger = set(ChainHead.objects.values_list("project_id", flat=True)) | set(
                LedgerEntry.objects.values_list("project_id", flat=True).distinct()
            )
            projects = list(Project.objects.filter(pk__in=with_ledger).order_by("slug"))
        broken = 0
        for p in projects:
            result = selectors.ledger_verify(project=p)
            if result.ok:
                self.stdout.write(f"{p.slug}: ok, {result.entries} entries, head #{result.head_seq} {result.head_hash}")
            else:
                broken += 1
                self.stdout.write(self.style.ERROR(f"{p.slug}: {len(result.problems)} problem(s)"))
                for text in result.problems:
                    self.stdout.write(f"  {text}")
        if broken:
            raise CommandError(f"The ledger of {broken} project(s) does not verify.")
        self.stdout.write(self.style.SUCCESS(f"{len(projects)} project ledger(s) verified."))
