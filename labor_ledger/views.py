"""The annotator's earnings pages (server-rendered). Every answer carries Cache-Control: no-store."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from annotation import agreement, welfare
from annotation.selectors import projects_visible_to, role_in_project
from core.errors import TallyError
from core.roles import LABELERS

from . import charts, periods, selectors, services
from .forms import TimeDisputeForm
from .models import TimeCategory, TimeDispute


def _tasks(entries) -> list[dict]:
    """A day's entries (newest first) as one row per task: the entries of one attempt or one
    instruction reading together, every other entry (a top-up, a bonus) on its own row."""
    groups: dict[tuple, dict] = {}
    for e in entries:
        key = ("attempt", e.attempt_id) if e.attempt_id else ("reading", e.reading_id) if e.reading_id else ("e", e.pk)
        g = groups.setdefault(
            key,
            {"key": f"{key[0]}-{key[1]}", "attempt_id": e.attempt_id, "when": e.occurred_at, "category": "",
             "kind": e.get_kind_display(), "active": 0, "wall": 0, "units": 0, "amount": 0, "seqs": []},
        )  # fmt: skip
        g["when"] = min(g["when"], e.occurred_at)
        if e.time_category and not g["category"] and e.time_category != TimeCategory.BETWEEN_TASKS:
            g["category"] = e.get_time_category_display()  # the newest says what became of the task
        g["active"] += e.active_seconds
        g["wall"] += e.wall_seconds
        g["units"] += e.units
        g["amount"] += e.amount
        g["seqs"].append(e.seq)
    return list(groups.values())


def _day_chart(earnings, currency: str) -> str:
    days = sorted(earnings.periods, key=lambda p: p.period)[-charts.EARNINGS_DAYS :]
    return charts.earnings_by_day(
        [
            {
                "period": p.period,
                "hours": float(p.hours_worked),
                "pay": float(p.earned),
                "top_up": float(p.projected_top_up),
                "floor": float(max(p.floor_amount, 0)),
                "settled": p.is_settled,
            }
            for p in days
        ],
        currency=currency,
    )


@never_cache
@login_required
def earnings_index(request):
    projects = projects_visible_to(request.user).order_by("name")
    return render(request, "labor_ledger/earnings_index.html", {"projects": projects})


@never_cache
@login_required
def earnings_page(request, slug, *, dispute_form=None, status=200):
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
            "tasks": _tasks(entries),
            "period_is_day": periods.period_length().days == 1,
            "day_chart": _day_chart(earnings, project.currency),
            "currency": project.currency,
            "welfare": welfare.policy_of(project),
            # Their own agreement with the others and accuracy on gold texts: nobody else's.
            "own_agreement": agreement.own_agreement(project=project, user=annotator),
            **_dispute_context(request, project, annotator, earnings=earnings, period=period, form=dispute_form),
        },
        status=status,
    )


def _dispute_form(project, annotator, *, earnings, period, data=None) -> TimeDisputeForm:
    days = [p.period for p in earnings.periods][:31]
    attempts = selectors.disputable_attempts(project=project, annotator=annotator, period=period)
    return TimeDisputeForm(data, days=days, attempts=attempts, prefix="dispute")


def _dispute_context(request, project, annotator, *, earnings, period, form) -> dict:
    """The disputes section: the annotator's own disputes, and on their own page the form."""
    own = annotator == request.user
    if own and form is None:
        form = _dispute_form(project, annotator, earnings=earnings, period=period)
    return {"dispute_form": form if own else None, "disputes": _disputes_of(project, annotator)}


def _disputes_of(project, annotator) -> list:
    disputes = list(
        TimeDispute.objects.filter(project=project, annotator=annotator)
        .select_related("decision", "decision__decided_by", "decision__entry")
        .order_by("-created_at", "-pk")[:100]
    )
    for dispute in disputes:
        dispute.status = selectors.dispute_status(dispute)
    return disputes


@never_cache
@login_required
@require_POST
def earnings_dispute(request, slug):
    """Contest your own time from the earnings page (issue 14, item 6). The form lists your
    days and the closed attempts of the period shown; the service checks everything again."""
    project = projects_visible_to(request.user).filter(slug=slug).first()
    if project is None:
        raise Http404
    if role_in_project(user=request.user, project=project) not in LABELERS:
        raise PermissionDenied("Only people who label here can contest their time.")
    earnings = selectors.earnings_for(project=project, annotator=request.user)
    period = earnings.current.period
    if request.GET.get("period"):
        try:
            period = periods.parse_period(request.GET["period"])
        except ValueError as exc:
            raise Http404 from exc
    form = _dispute_form(project, request.user, earnings=earnings, period=period, data=request.POST)
    if form.is_valid():
        try:
            dispute = services.time_dispute_create(
                project=project,
                annotator=request.user,
                claimed_seconds=form.cleaned_data["claimed"],
                note=form.cleaned_data["note"],
                **form.subject_kwargs(),
            )
        except TallyError as exc:
            form.add_error(None, exc.message)
            return earnings_page(request, slug, dispute_form=form, status=exc.status_code)
        messages.success(request, f"Dispute #{dispute.pk} filed: an admin of {project.name} will decide it.")
        return redirect(f"{reverse('earnings:project', args=[project.slug])}#earnings-disputes")
    return earnings_page(request, slug, dispute_form=form, status=400)
