"""Accounts and roles from the command line (operators; project admins use the console).

    manage.py tally_user add USERNAME [--email E] [--project SLUG --role ROLE]
    manage.py tally_user set-role USERNAME --project SLUG --role ROLE
    manage.py tally_user remove USERNAME --project SLUG
    manage.py tally_user invite --project SLUG --role ROLE [--note TEXT]

`add` creates an active account with a random one-time password, printed once (the person
changes it after logging in). `set-role` adds the person to the project or changes their
role; `remove` takes them out. Both close the person's open claims when they stop labeling.
`invite` prints a one-time invitation path, as the console's Members page makes.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from annotation import services
from annotation.models import Membership, Project
from core.errors import TallyError


class Command(BaseCommand):
    help = "Create accounts, set or remove their project roles, make invitation links."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create an account with a one-time password")
        add.add_argument("username")
        add.add_argument("--email", default="")
        add.add_argument("--project", help="also add the account to this project (slug)")
        add.add_argument("--role", choices=Membership.Role.values, default=Membership.Role.ANNOTATOR)
        role = sub.add_parser("set-role", help="add a person to a project or change their role")
        role.add_argument("username")
        role.add_argument("--project", required=True)
        role.add_argument("--role", choices=Membership.Role.values, required=True)
        remove = sub.add_parser("remove", help="take a person out of a project")
        remove.add_argument("username")
        remove.add_argument("--project", required=True)
        invite = sub.add_parser("invite", help="print a one-time invitation link path")
        invite.add_argument("--project", required=True)
        invite.add_argument("--role", choices=Membership.Role.values, required=True)
        invite.add_argument("--note", default="")

    def handle(self, *args, action, **options):
        try:
            getattr(self, "_" + action.replace("-", "_"))(**options)
        except TallyError as exc:
            raise CommandError(exc.message) from exc

    @staticmethod
    def _project(slug: str) -> Project:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project {slug!r}.")
        return project

    @staticmethod
    def _user(username: str):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        return user

    def _add(self, *, username, email, project, role, **_):
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(f"The user {username!r} exists already; use set-role to give them a role.")
        target = self._project(project) if project else None
        user, password = services.account_create(username=username, email=email)
        if target is not None:
            services.membership_set(project=target, user=user, role=role)
        self.stdout.write(f"Created {user.username}" + (f", {role} in {target.slug}" if target else "") + ".")
        self.stdout.write(f"One-time password (shown once; change it after logging in): {password}")

    def _set_role(self, *, username, project, role, **_):
        target, user = self._project(project), self._user(username)
        if Membership.objects.filter(project=target, user=user).exists():
            services.member_set_role(project=target, user=user, role=role)
        else:
            services.membership_set(project=target, user=user, role=role)
        self.stdout.write(f"{username} is {role} in {target.slug}.")

    def _remove(self, *, username, project, **_):
        target, user = self._project(project), self._user(username)
        services.member_remove(project=target, user=user)
        self.stdout.write(f"{username} was removed from {target.slug}; their open claims were closed.")

    def _invite(self, *, project, role, note, **_):
        target = self._project(project)
        invitation, token = services.invitation_create(project=target, role=role, note=note, created_by=None)
        until = f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC"
        self.stdout.write(f"Invitation to {target.slug} as {role}, good once, until {until}:")
        self.stdout.write(reverse("console:invitation", args=[token]))
