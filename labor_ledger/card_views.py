"""The Labor Card pages (server-rendered, charts inline as SVG, no script). Admins and auditors
of the project only: annotators get 403, everyone else 404. Read-only: any other method than
GET or HEAD answers 403. Pay is private: every answer carries Cache-Control: no-store."""

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from rest_framework.exceptions import PermissionDenied as DRFPermissionDenied

from annotation.permissions import project_for
from core.roles import READERS

from . import pseudonyms
from .apis_reports import version_for
from .labor_index import VersionNotIndexed
from .reports import card as labor_card
from .reports import writers
from .reports.sql import LedgerHead


def _project(request, slug, *, write: bool = False):
    try:
        return project_for(user=request.user, slug=slug, roles=READERS, write=write)
    except DRFPermissionDenied as exc:
        raise PermissionDenied(str(exc.detail)) from exc


def _read_only(request, slug):
    if request.method not in ("GET", "HEAD"):
        _project(request, slug, write=True)  # 404 for outsiders, 403 for annotators and auditors
        raise PermissionDenied("The Labor Card is read-only.")


@never_cache
@login_required
def labor_card_index(request, slug):
    """The project's model versions, each with a link to its Labor Card."""
    _read_only(request, slug)
    project = _project(request, slug)
    from training.selectors import versions_for

    versions = list(versions_for(project=project).order_by("-sequence"))
    return render(request, "labor_ledger/labor_card_index.html", {"project": project, "versions": versions})


@never_cache
@login_required
def labor_card_page(request, slug, sequence):
    _read_only(request, slug)
    project = _project(request, slug)
    version = version_for(project, sequence)
    try:
        card = labor_card.labor_card(version=version)
    except VersionNotIndexed as exc:
        context = {"project": project, "version": version, "message": exc.message}
        return render(request, "labor_ledger/labor_card_not_indexed.html", context, status=409)
    charts_key = labor_card.cache_key(version, LedgerHead(**card["ledger_head"])) + ":charts"
    charts = cache.get(charts_key)
    if charts is None:
        charts = labor_card.card_charts(card)
        cache.set(charts_key, charts, labor_card.CACHE_SECONDS)
    api = reverse("labor_ledger:labor-report", args=[project.slug])
    scoped = f"{api}?model_version={version.sequence}"
    # The same names as the card: keyed pseudonyms by default whenever a key is configured.
    named = "&pseudonymize=true" if pseudonyms.pseudonyms_available() else ""
    exports = [
        {
            "name": f"Labor of v{version.sequence} by annotator",
            "key": "annotator",
            "url": f"{scoped}&by=annotator{named}",
        },
        {"name": f"Labor of v{version.sequence} by period", "key": "period", "url": f"{scoped}&by=period"},
        {"name": f"Labor of v{version.sequence}, total", "key": "project", "url": f"{scoped}&by=project"},
        {"name": "Labor per model version (every version)", "key": "versions", "url": f"{api}?by=version"},
        {
            "name": "Project labor by annotator (whole ledger)",
            "key": "project-annotators",
            "url": f"{api}?by=annotator{named}",
        },
        {"name": "Project labor by period (whole ledger)", "key": "project-periods", "url": f"{api}?by=period"},
    ]
    sheet = reverse("labor_ledger:datasheet", args=[project.slug, version.sequence])
    return render(
        request,
        "labor_ledger/labor_card.html",
        {
            "project": project,
            "version": version,
            "card": card,
            "charts": charts,
            "exports": exports,
            "formats": writers.FORMATS,
            "pseudonyms_available": pseudonyms.pseudonyms_available(),
            "named_annotators_url": f"{scoped}&by=annotator&pseudonymize=false",
            "datasheet_md": f"{sheet}?format=md",
            "datasheet_json": f"{sheet}?format=json",
            "card_api": reverse("labor_ledger:labor-card", args=[project.slug, version.sequence]),
        },
    )
