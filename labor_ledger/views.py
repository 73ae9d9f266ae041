"""The annotator's earnings pages (server-rendered). Every answer carries Cache-Control: no-store."""

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from annotation.selectors import projects_visible_to

from . import periods, selectors


@never_cache
@login_required
def earnings_index(request):
    projects = projects_visible_to(request.user).order_by("name")
    return render(request, "labor_ledger/earnings_index.html", {"projects": projects})


@never_cache
@login_required
def earnings_page(request, slug):
    """Your earnings in one project: the current period, each period, the entries behind them.

    A project's admins and auditors may add ?annotator=<username> to read someone's page;
    for anyone else another person's page does not exist (404)."""
    project = projects_visible_to(request.user).filter(slug=slug).first()
    if project is None:
        raise Http404
    annotator = request.user
    username = request.GET.get("annotator")
    if username and username != request.user.username:
        if not selectors.can_read_project_ledger(user=request.user, project=project):
            raise Http404
        annotator = get_user_model().objects.filter(username=username, memberships__project=project).first()
        if annotator is None:
            raise Http404
    earnings = selectors.earnings_for(project=project, annotator=annotator)
    period = earnings.current.period
    if request.GET.get("period"):
        try:
            period = periods.parse_period(request.GET["period"])
        except ValueError as exc:
            raise Http404 from exc
    entries = list(selectors.entries_of_period(project=project, annotator=annotator, period=period)[:500])
    selected = next((p for p in earnings.periods if p.period == period), None)
    return render(
        request,
        "labor_ledger/earnings.html",
        {
            "project": project,
            "annotator": annotator,
            "viewing_other": annotator != request.user,
            "earnings": earnings,
            "current": earnings.current,
            "selected_period": period,
            "selected": selected,
            "entries": entries,
            "currency": project.currency,
        },
    )
