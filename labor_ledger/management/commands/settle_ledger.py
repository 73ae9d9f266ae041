from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from annotation.models import Project
from core.errors import TallyError
from labor_ledger import periods, settlement


class Command(BaseCommand):
    help = (
        "Close complete settlement periods (UTC days by default): per annotator, write the floor top-up "
        "and the rounding to the currency's minor unit as ledger entries. Idempotent: a settled period "
        "is never settled again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", help="project slug (default: every project with entries)")
        parser.add_argument("--period", help="settle only this period (YYYY-MM-DD, a day inside it); must have ended")

    def handle(self, *args, project=None, period=None, **options):
        now = timezone.now()
        target = None
        if project:
            target = Project.objects.filter(slug=project).first()
            if target is None:
                raise CommandError(f"No project with the slug {project!r}.")
        try:
            if period:
                if target is None:
                    raise CommandError("--period needs --project.")
                settlements = settlement.project_settle(project=target, period=periods.parse_period(period), now=now)
            else:
                settlements = settlement.settle_due(project=target, now=now)
        except ValueError as exc:
            raise CommandError(f"Bad --period: {exc}") from exc
        except TallyError as exc:
            raise CommandError(exc.message) from exc
        except settlement.SettlementFailed as exc:
            raise CommandError(str(exc)) from exc
        for s in settlements:
            self.stdout.write(
                f"{s.project.slug} {s.period} {s.annotator.get_username()}: pay {s.gross:.6f} + top-up {s.top_up:.6f}"
                f" + rounding {s.rounding:.6f} = {s.payable} {s.currency}"
                f" for {s.counted_seconds / 3600:.2f} h worked, {s.examples} texts"
            )
        self.stdout.write(self.style.SUCCESS(f"Settled {len(settlements)} annotator-period(s)."))
