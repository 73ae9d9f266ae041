"""Project-scoped access: every API view resolves its project through here."""

from django.http import Http404
from rest_framework.exceptions import PermissionDenied

from .models import Membership, Project

ANY_ROLE = frozenset(Membership.Role.values)


def project_for(*, user, slug: str, roles=ANY_ROLE, write: bool = False) -> Project:
    """The project if the user may see it (else 404, never 403: slugs leak nothing) and holds
    one of `roles` there (else 403). Auditors read everything and write nothing."""
    # One query on the hot path (every annotator request): the membership and its project.
    if not user.is_authenticated:
        raise Http404
    if user.is_superuser:
        project, role = Project.objects.filter(slug=slug).first(), Membership.Role.ADMIN
    else:
        membership = Membership.objects.select_related("project").filter(user=user, project__slug=slug).first()
        project, role = (membership.project, membership.role) if membership else (None, None)
    if project is None:
        raise Http404
    if role not in roles or (write and role == Membership.Role.AUDITOR):
        raise PermissionDenied("Your role in this project does not allow this.")
    return project
