"""Who may open a console page, and the project navigation bar each role sees."""

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.urls import reverse
from rest_framework.exceptions import PermissionDenied as DRFPermissionDenied

from annotation.permissions import project_for
from core.roles import ADMINS, READERS, Role

LABELERS = frozenset({Role.ANNOTATOR, Role.ADMIN})


def project_page(request, slug: str, *, roles=READERS, write: bool = False):
    """The project of a page: 404 for people outside it (its slug tells them nothing), 403
    for members whose role may not use the page (auditors never write)."""
    try:
        return project_for(user=request.user, slug=slug, roles=roles, write=write)
    except DRFPermissionDenied as exc:
        raise PermissionDenied(str(exc.detail)) from exc


def admin_page(request, slug: str):
    """A page that changes something: the project's admins only."""
    return project_page(request, slug, roles=ADMINS, write=True)


@dataclass(frozen=True)
class NavItem:
    key: str
    title: str
    url: str


# (key, title, url name, roles that see it). One list: the bar, the tests and docs/console.md
# read the same order.
NAV = (
    ("dashboard", "Dashboard", "console:dashboard", READERS),
    ("label", "Label", "frontend:label", LABELERS),
    ("earnings", "Earnings", "earnings:project", LABELERS),
    ("models", "Models", "console:models", READERS),
    ("agreement", "Agreement", "console:agreement", READERS),
    ("labor-cards", "Labor Cards", "labor_card:index", READERS),
    ("ledger", "Ledger", "console:ledger", READERS),
    ("disputes", "Disputes", "console:disputes", READERS),
    ("review", "Review", "console:review", ADMINS),
    ("import", "Import", "console:import", ADMINS),
    ("pay", "Pay", "console:pay", READERS),
    ("settings", "Settings", "console:settings", READERS),
    ("welfare", "Welfare", "console:welfare", READERS),
    ("members", "Members", "console:members", ADMINS),
)


def nav_for(*, slug: str, role: str | None) -> list[NavItem]:
    """The links of the project bar a person with `role` may follow (none without a role)."""
    return [NavItem(key, title, reverse(name, args=[slug])) for key, title, name, roles in NAV if role in roles]
