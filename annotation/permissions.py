"""Project-scoped access: every API view resolves its project through here."""

from django.http import Http404
from rest_framework.exceptions import PermissionDenied

from core.roles import ANY_ROLE

from .models import Membership, Project
from .selectors import project_and_role


def project_for(*, user, slug: str, roles=ANY_ROLE, write: bool = False) -> Project:
    """The project if the user may see it (else 404, never 403: slugs leak nothing) and holds
    one of `roles` there (else 403). Auditors read everything and write nothing."""
    project, role = project_and_role(user=user, slug=slug)
    if project is None:
        raise Http404
    if role not in roles or (write and role == Membership.Role.AUDITOR):
        raise PermissionDenied("Your role in this project does not allow this.")
    return project
