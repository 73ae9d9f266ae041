"""Create the demo: the "AG News topics" project, its people, and its texts. Safe to run again.

No password is ever fixed in code: each demo user gets `secrets.token_urlsafe()` when created
(or when --reset-passwords asks for new ones), printed once at the end and stored nowhere
else but as a hash.
"""

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotation import services
from annotation.models import Membership, Project
from core.roles import ADMINS_GROUP, ANNOTATORS_GROUP, AUDITORS_GROUP

PROJECT_NAME = "AG News topics"
PROJECT_SLUG = "ag-news-topics"
LABELS = ["World", "Sports", "Business", "Sci-Tech"]
FIXTURE = Path("demo") / "fixtures" / "ag_news_demo.csv"
INSTRUCTIONS = """\
Read the news snippet and choose the ONE topic it is mainly about.

World: international affairs, politics, conflicts, elections and diplomacy outside business.
Sports: games, athletes, teams, leagues and tournaments.
Business: companies, markets, the economy, earnings, trade, oil prices.
Sci-Tech: science, technology, the internet, software, space, health research.

When a text fits two topics, pick the one its headline is about. Skip a text only if it fits
none of them or you cannot tell."""


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    group: str
    is_staff: bool = False


DEMO_USERS = [
    DemoUser("demo-admin", Membership.Role.ADMIN, ADMINS_GROUP, is_staff=True),
    DemoUser("annotator1", Membership.Role.ANNOTATOR, ANNOTATORS_GROUP),
    DemoUser("annotator2", Membership.Role.ANNOTATOR, ANNOTATORS_GROUP),
    DemoUser("auditor", Membership.Role.AUDITOR, AUDITORS_GROUP),
]


class Command(BaseCommand):
    help = (
        "Create the demo project (AG News topics), one admin, two annotators and an auditor with "
        "generated passwords, and import the demo texts. Idempotent; prints new logins once."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset-passwords",
            action="store_true",
            help="Give the existing demo users new generated passwords too (make demo does this).",
        )
        parser.add_argument(
            "--fixture",
            default=None,
            help=f"CSV with columns text,label to import when the project has no texts (default {FIXTURE}).",
        )
        parser.add_argument("--no-examples", action="store_true", help="Do not import texts.")

    def handle(self, *args, **options):
        with transaction.atomic():
            logins = self._ensure_users(reset=options["reset_passwords"])
            admin = get_user_model().objects.get(username=DEMO_USERS[0].username)
            project = self._ensure_project(admin)
            for demo_user in DEMO_USERS:
                user = get_user_model().objects.get(username=demo_user.username)
                services.membership_set(project=project, user=user, role=demo_user.role)

        if not options["no_examples"] and not project.examples.exists():
            fixture = Path(options["fixture"]) if options["fixture"] else Path(settings.BASE_DIR) / FIXTURE
            if not fixture.exists():
                raise CommandError(f"The demo fixture {fixture} is missing.")
            self.stdout.write(f"Importing the demo texts from {fixture} …")
            call_command(
                "import_examples",
                str(fixture),
                project=project.slug,
                text_column="text",
                label_column="label",
                stdout=self.stdout,
                stderr=self.stderr,
            )
        count = project.examples.count()
        self.stdout.write(self.style.SUCCESS(f"Project {project.name!r} ({project.slug}) has {count} texts."))
        self._print_logins(logins)

    def _ensure_users(self, *, reset: bool) -> list[tuple[DemoUser, str | None]]:
        User = get_user_model()
        logins = []
        for demo_user in DEMO_USERS:
            user, created = User.objects.get_or_create(username=demo_user.username)
            password = None
            if created or reset or not user.has_usable_password():
                password = secrets.token_urlsafe(12)
                user.set_password(password)
            user.is_staff = demo_user.is_staff
            user.is_active = True
            if not user.email:
                user.email = f"{demo_user.username}@demo.invalid"
            user.full_clean()
            user.save()
            group, _ = Group.objects.get_or_create(name=demo_user.group)
            user.groups.add(group)
            logins.append((demo_user, password))
        return logins

    def _ensure_project(self, admin) -> Project:
        project = Project.objects.filter(slug=PROJECT_SLUG).first()
        if project is None:
            return services.project_create(
                name=PROJECT_NAME,
                slug=PROJECT_SLUG,
                labels=LABELS,
                instructions=INSTRUCTIONS,
                created_by=admin,
            )
        existing = set(project.labels.values_list("name", flat=True))
        for name in LABELS:
            if name not in existing:
                services.label_create(project=project, name=name)
        return project

    def _print_logins(self, logins) -> None:
        self.stdout.write("")
        self.stdout.write("Demo logins (shown once; passwords are stored only as hashes):")
        width = max(len(d.username) for d, _ in logins)
        for demo_user, password in logins:
            shown = password or "(unchanged; run `manage.py seed_demo --reset-passwords` for a new one)"
            self.stdout.write(f"  {demo_user.role:<10} {demo_user.username:<{width}}  {shown}")
