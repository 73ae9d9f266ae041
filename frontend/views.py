"""Server-rendered pages. Reads go through annotation.selectors / annotation.permissions, so a
page shows exactly what the API would let the same user see."""

from decimal import ROUND_HALF_UP

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from rest_framework.exceptions import PermissionDenied as DRFPermissionDenied

from annotation import welfare
from annotation.models import Annotation, Example, Membership, SensitiveCategory
from annotation.permissions import project_for
from annotation.selectors import labels_offered, projects_visible_to
from core.roles import READERS
from labor_ledger import money
from labor_ledger import selectors as ledger_selectors
from labor_ledger.durations import fmt_duration
from training import selectors as training_selectors
from training.models import TrainingRun

from .console.selectors import Progress, progress_of

LABELER_ROLES = frozenset({Membership.Role.ANNOTATOR, Membership.Role.ADMIN})


@login_required
def home(request):
    """The user's projects with their role and progress in each; a Label link where they may
    label, the project's dashboard where they may read it."""
    my_role = Membership.objects.filter(project=OuterRef("pk"), user=request.user).values("role")[:1]
    projects = list(projects_visible_to(request.user).annotate(my_role=Subquery(my_role)).order_by("name"))
    progress = progress_of(projects=projects)
    rows = []
    for project in projects:
        # A superuser sees every project and acts as its admin (as annotation.selectors says).
        role = project.my_role or (Membership.Role.ADMIN if request.user.is_superuser else None)
        rows.append(
            {
                "project": project,
                "role": Membership.Role(role).label if role else "",
                "can_label": role in LABELER_ROLES,
                "can_read": role in READERS,
                "progress": progress.get(project.pk, Progress()),
            }
        )
    can_create = request.user.has_perm("annotation.add_project")
    return render(request, "frontend/home.html", {"rows": rows, "can_create": can_create})


def _attempt_url(name: str) -> str:
    # The page fills in the attempt id: /api/attempts/{id}/submit/.
    return reverse(f"annotation:{name}", args=[0]).replace("/0/", "/{id}/")


@login_required
def label(request, slug):
    """The annotator's page: one text at a time, keyboard first; the JS talks to the REST API."""
    try:
        project = project_for(user=request.user, slug=slug, roles=LABELER_ROLES, write=True)
    except DRFPermissionDenied as exc:  # members without a labeling role (auditors)
        raise PermissionDenied(str(exc.detail)) from exc
    labels = list(labels_offered(project))  # retired labels are not given anew
    labeled = Annotation.objects.filter(
        project=project, annotator=request.user, status=Annotation.Status.ACCEPTED, source=Annotation.Source.HUMAN
    ).count()
    # "About N left": texts still short of their overlap. The exact per-annotator count would
    # probe every open text (seconds on a million-text pool) on each page load.
    left = Example.objects.filter(project=project, submitted_count__lt=project.annotations_per_example).count()
    config = {
        "slug": project.slug,
        "labelMode": project.label_mode,
        "heartbeatMs": int(float(settings.TALLY_HEARTBEAT_INTERVAL_SECONDS) * 1000),
        "idleMs": int(float(settings.TALLY_IDLE_CUTOFF_SECONDS) * 1000),
        "maxOpenClaims": settings.TALLY_MAX_OPEN_CLAIMS,
        "nextUrl": reverse("annotation:queue-next", args=[project.slug]),
        "undoUrl": reverse("annotation:undo", args=[project.slug]),
        "heartbeatUrl": _attempt_url("attempt-heartbeat"),
        "submitUrl": _attempt_url("attempt-submit"),
        "skipUrl": _attempt_url("attempt-skip"),
        "instructionsHeartbeatUrl": reverse("labor_ledger:instructions-heartbeat", args=[project.slug]),
        "instructionsCloseUrl": reverse("labor_ledger:instructions-close", args=[project.slug]),
        "statusUrl": reverse("frontend:label-status", args=[project.slug]),
        "statusMs": STATUS_POLL_MS,
        "labeled": labeled,
        "left": left,
        **_welfare_config(project),
    }
    shortcuts = [str(i) for i in range(1, 10)] + ["0"]
    return render(
        request,
        "frontend/label.html",
        {
            "project": project,
            "labels": [(lab, shortcuts[i] if i < len(shortcuts) else "") for i, lab in enumerate(labels)],
            "multi": project.label_mode == project.LabelMode.MULTI,
            "config": config,
            "welfare": welfare.policy_of(project),
        },
    )


def _welfare_config(project) -> dict:
    """What the labeling page needs for content warnings, limits and breaks (docs/welfare.md)."""
    policy = welfare.policy_of(project)
    return {
        "welfareStatusUrl": reverse("annotation:welfare-status", args=[project.slug]),
        "breakStartUrl": reverse("annotation:break-start", args=[project.slug]),
        "breakEndUrl": reverse("annotation:break-end"),
        "breakAfterMs": (policy.break_after_minutes * 60_000) if policy else 0,
        "sensitive": bool(policy and policy.sensitive),
        "categoryNames": dict(SensitiveCategory.choices),
    }


# How often the labeling page asks for its running tally and the training status (it also asks
# after every saved answer).
STATUS_POLL_MS = 30_000


@never_cache
@login_required
def label_status(request, slug):
    """The labeling page's small JSON: the requester's own figures for today (the current
    ledger period: booked active time plus what is credited on their open texts and readings,
    texts, pay before any top-up) and a compact training status (the current model version and
    whether a run is queued or running). Nothing about anyone else, and no metric: accuracy
    on gold would reveal gold."""
    try:
        project = project_for(user=request.user, slug=slug, roles=LABELER_ROLES, write=True)
    except DRFPermissionDenied as exc:
        raise PermissionDenied(str(exc.detail)) from exc
    today = ledger_selectors.today_for(project=project, annotator=request.user)
    version = training_selectors.current_version(project=project)
    run = (
        training_selectors.runs_for(project=project)
        .filter(status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING])
        .order_by("id")
        .first()
    )
    earned = today.earned.quantize(money.minor_unit(today.currency), rounding=ROUND_HALF_UP)
    return JsonResponse(
        {
            "today": {
                "period": today.period.isoformat(),
                "seconds": float(today.seconds),
                "time": fmt_duration(today.seconds),
                "texts": today.examples,
                "earned": str(earned),
                "currency": today.currency,
            },
            "training": {
                "version": version.sequence if version else None,
                "run": run.status if run else None,
                "stage": run.stage if run and run.status == TrainingRun.Status.RUNNING else "",
            },
        }
    )
