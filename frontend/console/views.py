"""The console's pages. Each view resolves its project through `access` (404 outside the
project, 403 for a role that may not use the page), validates a form, calls one service or
selector, and renders; nothing is written on GET. Domain errors (core.errors.TallyError) are
shown in the form that caused them."""

import csv
import uuid

from django.conf import settings as django_settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from annotation import agreement as annotation_agreement
from annotation import review as review_services
from annotation import selectors as annotation_selectors
from annotation import services as annotation_services
from annotation import welfare
from annotation.models import ImportBatch
from core.errors import TallyError
from core.roles import ADMINS
from labor_ledger import checkpoints, settlement
from labor_ledger import selectors as ledger_selectors
from labor_ledger import services as ledger_services
from labor_ledger.models import ChainHead, LedgerEntry, TimeDispute
from training import selectors as training_selectors
from training import services as training_services
from training.models import Loop

from . import imports, selectors
from . import review as review_selectors
from .access import admin_page, project_page
from .forms import (
    ROLE_CHOICES,
    AcceptForm,
    AcceptPreviewForm,
    DisputeDecisionForm,
    ImportForm,
    InvitationForm,
    LabelNameForm,
    LedgerFilterForm,
    PayPolicyForm,
    ProjectCreateForm,
    ProjectSettingsForm,
    QualityControlForm,
    ReviewDecisionForm,
    RoleForm,
    RoutingForm,
    SignupForm,
    TrainingSettingsForm,
)


def _form_error(form, exc: TallyError) -> None:
    form.add_error(None, exc.message)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def project_create(request):
    """A new project; its creator becomes its admin. Needs the site-level right to create
    projects (the "Tally admins" group, or a superuser)."""
    if not request.user.has_perm("annotation.add_project"):
        raise PermissionDenied("Only Tally admins create projects.")
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = annotation_services.project_create(created_by=request.user, **form.cleaned_data)
        except TallyError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Project {project.name} created. Import texts next.")
            return redirect("console:import", project.slug)
    return render(request, "frontend/console/project_create.html", {"form": form})


@never_cache
@login_required
def dashboard(request, slug):
    project = project_page(request, slug)
    board = selectors.dashboard(project=project)
    near = welfare.people_near_limits(project=project)  # docs/welfare.md
    agreement = annotation_agreement.figures(annotation_agreement.ratings_for(project=project), n_boot=DASHBOARD_BOOT)
    context = {"project": project, "board": board, "near": near, "agreement": agreement}
    return render(request, "frontend/console/dashboard.html", context)


# --- agreement -----------------------------------------------------------------------------------

DASHBOARD_BOOT = 200


@never_cache
@login_required
def agreement_page(request, slug):
    """Every agreement figure of the project (per label, annotator, pair, period), and
    Dawid-Skene's estimate of each annotator's reliability: admins and auditors."""
    project = project_page(request, slug)
    period = request.GET.get("period", "week")
    if period not in annotation_agreement.PERIODS:
        period = "week"
    context = {
        "project": project,
        "fig": annotation_agreement.project_figures_cached(project=project, period=period),
        "reliability": annotation_agreement.annotator_reliability(project=project),
        "config": training_selectors.training_config(project=project),
        "period": period,
    }
    return render(request, "frontend/console/agreement.html", context)


@never_cache
@login_required
def agreement_csv(request, slug):
    """The figures as CSV rows: scope, subject, measure, value, low, high, n_texts, n_pairs, note."""
    project = project_page(request, slug)
    fig = annotation_agreement.project_figures_cached(project=project)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="agreement-{project.slug}.csv"'
    writer = csv.writer(response)
    writer.writerow(["scope", "subject", "measure", "value", "low", "high", "n_texts", "n_pairs", "note"])
    for scope, subject, measure, e in annotation_agreement.flat_rows(fig):
        writer.writerow(
            [scope, subject, measure, e["value"], e["low"], e["high"], e["n_units"], e["n_pairs"], e["note"]]
        )
    return response


# --- members -------------------------------------------------------------------------------------


def _members_page(request, project, *, invite_form=None, invitation=None, token=None, status=200):
    context = {
        "project": project,
        "members": annotation_selectors.members_of(project=project),
        "invitations": annotation_selectors.invitations_pending(project=project),
        "invite_form": invite_form or InvitationForm(),
        "roles": ROLE_CHOICES,
        "new_invitation": invitation,
        "invitation_url": request.build_absolute_uri(reverse("console:invitation", args=[token])) if token else "",
    }
    return render(request, "frontend/console/members.html", context, status=status)


@never_cache
@login_required
def members(request, slug):
    project = admin_page(request, slug)
    return _members_page(request, project)


@never_cache
@login_required
@require_POST
def member_invite(request, slug):
    """A one-time invitation link, shown once on the page this answers with (never stored in
    clear, never sent through a cookie)."""
    project = admin_page(request, slug)
    form = InvitationForm(request.POST)
    if form.is_valid():
        try:
            invitation, token = annotation_services.invitation_create(
                project=project, created_by=request.user, **form.cleaned_data
            )
        except TallyError as exc:
            _form_error(form, exc)
        else:
            return _members_page(request, project, invitation=invitation, token=token)
    return _members_page(request, project, invite_form=form, status=400)


@never_cache
@login_required
@require_POST
def member_role(request, slug, user_id):
    project = admin_page(request, slug)
    form = RoleForm(request.POST)
    member = get_object_or_404(annotation_selectors.members_of(project=project), user_id=user_id)
    if not form.is_valid():
        messages.error(request, "Choose a role.")
    else:
        try:
            annotation_services.member_set_role(
                project=project, user=member.user, role=form.cleaned_data["role"], actor=request.user
            )
        except TallyError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{member.user.username} is now {form.cleaned_data['role']}.")
    return redirect("console:members", project.slug)


@never_cache
@login_required
@require_POST
def member_remove(request, slug, user_id):
    project = admin_page(request, slug)
    member = get_object_or_404(annotation_selectors.members_of(project=project), user_id=user_id)
    try:
        annotation_services.member_remove(project=project, user=member.user, actor=request.user)
    except TallyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{member.user.username} was removed; their open claims were closed.")
    return redirect("console:members", project.slug)


@never_cache
@login_required
@require_POST
def invitation_revoke(request, slug, invitation_id):
    project = admin_page(request, slug)
    try:
        annotation_services.invitation_revoke(project=project, invitation_id=invitation_id)
    except TallyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "The invitation was withdrawn; its link no longer works.")
    return redirect("console:members", project.slug)


@never_cache
@require_http_methods(["GET", "POST"])
def invitation(request, token):
    """The invitee's page: join with the account you are logged in with, or create one.
    Nothing is written on GET; a link that is used, withdrawn or expired is a 404."""
    invitation = annotation_selectors.invitation_open(token=token)
    if invitation is None:
        raise Http404
    signup = SignupForm(request.POST if request.POST.get("action") == "signup" else None)
    error = ""
    if request.method == "POST":
        try:
            if request.POST.get("action") == "join" and request.user.is_authenticated:
                annotation_services.invitation_accept(token=token, user=request.user)
                return redirect("frontend:home")
            if request.POST.get("action") == "signup" and not request.user.is_authenticated and signup.is_valid():
                user = annotation_services.invitation_signup(
                    token=token, username=signup.cleaned_data["username"], password=signup.cleaned_data["password"]
                )
                auth_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                return redirect("frontend:home")
        except TallyError as exc:
            error = exc.message
    return render(
        request,
        "frontend/console/invitation.html",
        {"invitation": invitation, "signup": signup, "error": error, "token": token},
        status=400 if request.method == "POST" else 200,
    )


# --- models ----------------------------------------------------------------------------------------


def _is_admin(request, project) -> bool:
    return annotation_selectors.role_in_project(user=request.user, project=project) in ADMINS


def _models_page(request, project, *, settings_form=None, status=200):
    config = training_selectors.training_config(project=project)
    context = {
        "project": project,
        "can_admin": _is_admin(request, project),
        "config": config,
        "current": training_selectors.current_version(project=project),
        "runs": selectors.runs_page(project=project),
        "versions": list(training_selectors.versions_for(project=project)[:50]),
        "settings_form": settings_form or TrainingSettingsForm(instance=config),
        "loops": Loop.choices,
    }
    return render(request, "frontend/console/models.html", context, status=status)


@never_cache
@login_required
def models_page(request, slug):
    """Runs (stage, progress, failure), versions (page, Labor Card, run), the retrain button
    and the training settings; auditors read it without the buttons."""
    return _models_page(request, project_page(request, slug))


@never_cache
@login_required
def runs_json(request, slug):
    """What the Models page polls while a run is queued or running (frontend/static/frontend/console.js)."""
    project = project_page(request, slug)
    rows = selectors.runs_page(project=project)
    return JsonResponse(
        {
            "active": any(r.run.status in selectors.ACTIVE_RUN for r in rows),
            "runs": [
                {
                    "id": r.run.pk,
                    "status": r.run.status,
                    "stage": r.run.stage,
                    "percent": r.percent,
                    "error": r.run.error[:500],
                    "version": r.version.sequence if r.version else None,
                }
                for r in rows
            ],
        }
    )


@never_cache
@login_required
@require_POST
def retrain(request, slug):
    project = admin_page(request, slug)
    loop = request.POST.get("loop", Loop.FAST)
    if loop not in Loop.values:
        messages.error(request, "Choose the fast or the deep loop.")
        return redirect("console:models", project.slug)
    try:
        run = training_services.training_run_request(project=project, requested_by=request.user, loop=loop)
    except TallyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Training run {run.pk} is queued.")
    return redirect("console:models", project.slug)


@never_cache
@login_required
@require_POST
def training_settings(request, slug):
    project = admin_page(request, slug)
    form = TrainingSettingsForm(request.POST, instance=training_selectors.training_config(project=project))
    if form.is_valid():
        try:
            training_services.config_update(project=project, **form.cleaned_data)
        except TallyError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, "Training settings saved.")
            return redirect("console:models", project.slug)
    return _models_page(request, project, settings_form=form, status=400)


# --- import ----------------------------------------------------------------------------------------


def _import_page(request, project, *, form=None, status=200):
    batches = list(ImportBatch.objects.filter(project=project).select_related("created_by")[:20])
    rows = [(b, imports.import_progress(batch=b)) for b in batches]
    active = any(b.status not in imports.FINISHED for b in batches)
    context = {"project": project, "form": form or ImportForm(), "rows": rows, "active": active}
    return render(request, "frontend/console/import.html", context, status=status)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def import_page(request, slug):
    """Upload a file through annotation's import services; the batches below show their
    progress (the page refreshes itself while one is pending or running)."""
    project = admin_page(request, slug)
    if request.method == "GET":
        return _import_page(request, project)
    form = ImportForm(request.POST, request.FILES)
    if form.is_valid():
        data = form.cleaned_data
        try:
            batch, _ = imports.upload(
                project=project,
                created_by=request.user,
                upload=data["file"],
                options=imports.options(
                    source_name=data["file"].name,
                    text_column=data["text_column"],
                    label_column=data["label_column"],
                    has_header=not data["no_header"],
                    create_labels=data["create_labels"],
                    visible_columns=data["visible_columns"],
                ),
            )
        except TallyError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Import {batch.pk} of {batch.source_name} is queued.")
            return redirect("console:import", project.slug)
    return _import_page(request, project, form=form, status=400)


# --- pay --------------------------------------------------------------------------------------------


def _pay_page(request, project, *, form=None, preview=None, status=200):
    current = ledger_selectors.policy_current(project=project)
    if form is None:
        initial = {}
        if current is not None:
            initial = {name: getattr(current, name) for name in PayPolicyForm.base_fields if name != "note"}
        form = PayPolicyForm(initial=initial)
    if preview is None:
        values = {name: form.initial.get(name, form.fields[name].initial) for name in PREVIEWED}
        preview = selectors.pay_preview(project=project, **values)
    context = {
        "project": project,
        "can_admin": _is_admin(request, project),
        "form": form,
        "preview": preview,
        "current": current,
        "policies": list(ledger_selectors.pay_policies(project=project).select_related("created_by").reverse()),
        "ledger_started": LedgerEntry.objects.filter(project=project).exists(),
    }
    return render(request, "frontend/console/pay.html", context, status=status)


PREVIEWED = ("piece_rate", "hourly_rate", "floor_hourly_rate")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def pay_page(request, slug):
    """The pay policy as a form, its versions, and a preview of the effective hourly wage at
    this project's median speed. "Preview" only computes; "Save" writes a new version."""
    if request.method == "GET":
        return _pay_page(request, project_page(request, slug))
    project = admin_page(request, slug)
    form = PayPolicyForm(request.POST)
    if not form.is_valid():
        return _pay_page(request, project, form=form, status=400)
    preview = selectors.pay_preview(project=project, **{k: form.cleaned_data[k] for k in PREVIEWED})
    if request.POST.get("action") != "save":
        return _pay_page(request, project, form=form, preview=preview)
    try:
        policy = ledger_services.pay_policy_create(project=project, created_by=request.user, **form.cleaned_data)
    except TallyError as exc:
        _form_error(form, exc)
        return _pay_page(request, project, form=form, preview=preview, status=400)
    messages.success(request, f"Pay policy version {policy.version} is in force.")
    return redirect("console:pay", project.slug)


# --- ledger -----------------------------------------------------------------------------------------


@never_cache
@login_required
def ledger_page(request, slug):
    """Verify (admins and auditors), settle (admins), and the entries: filtered, paged by sequence."""
    project = project_page(request, slug)
    filters = LedgerFilterForm(request.GET or None)
    values = filters.cleaned_data if filters.is_valid() else {}
    entries, next_before = selectors.ledger_page(project=project, **{k: v for k, v in values.items() if v})
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        "project": project,
        "can_admin": _is_admin(request, project),
        "filters": filters,
        "entries": entries,
        "next_query": f"{query.urlencode()}&before={next_before}" if next_before else "",
        "verification": ledger_selectors.last_verification(project=project),
        "head": ChainHead.objects.filter(project=project).first(),
        "checkpoint": checkpoints.latest(project),
        "checkpoint_key": checkpoints.published_key(),
        "due": selectors.unsettled_periods(project=project),
    }
    return render(request, "frontend/console/ledger.html", context)


@never_cache
@login_required
@require_POST
def ledger_verify(request, slug):
    """Recompute the chain, balances and settlements and record the result. Auditors may: it
    changes no books, it records that they were checked."""
    project = project_page(request, slug)
    result = ledger_services.ledger_verification_record(project=project, actor=request.user)
    if result.ok:
        messages.success(request, f"The ledger checks out: {result.entries} entries, chain head #{result.head_seq}.")
    else:
        messages.error(request, f"Verification found {len(result.problems)} problem(s); see below.")
    return redirect("console:ledger", project.slug)


@never_cache
@login_required
@require_POST
def ledger_settle(request, slug):
    project = admin_page(request, slug)
    try:
        settled = settlement.settle_due(project=project, actor=request.user)
    except (TallyError, settlement.SettlementFailed) as exc:
        messages.error(request, getattr(exc, "message", str(exc)))
    else:
        messages.success(request, f"Settled {len(settled)} annotator-period(s).")
    return redirect("console:ledger", project.slug)


# --- time disputes (issue 14, item 6) -------------------------------------------------------------


@never_cache
@login_required
def disputes(request, slug):
    """Time disputes to decide (open first, oldest first), then the decided ones. Admins decide;
    auditors read."""
    project = project_page(request, slug)
    rows = list(ledger_selectors.disputes_visible_to(user=request.user, project=project)[:300])
    for dispute in rows:
        dispute.state = ledger_selectors.dispute_status(dispute)
    context = {
        "project": project,
        "can_admin": _is_admin(request, project),
        "open": [d for d in rows if d.state == "open"],
        "decided": [d for d in rows if d.state != "open"],
        "form": DisputeDecisionForm(),
    }
    return render(request, "frontend/console/disputes.html", context)


@never_cache
@login_required
@require_POST
def dispute_decide(request, slug, dispute_id):
    project = admin_page(request, slug)
    dispute = get_object_or_404(TimeDispute, pk=dispute_id, project=project)
    form = DisputeDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Dispute #{dispute.pk}: " + " ".join(e for errs in form.errors.values() for e in errs))
        return redirect("console:disputes", project.slug)
    accept = form.cleaned_data["outcome"] == "accept"
    try:
        decision = ledger_services.time_dispute_decide(
            dispute=dispute,
            actor=request.user,
            accept=accept,
            reason=form.cleaned_data["reason"],
            granted_seconds=form.cleaned_data["granted"],
        )
    except TallyError as exc:
        messages.error(request, f"Dispute #{dispute.pk}: {exc.message}")
    else:
        if accept:
            messages.success(
                request, f"Dispute #{dispute.pk} accepted: ledger entry #{decision.entry.seq} adjusts the pay."
            )
        else:
            messages.success(request, f"Dispute #{dispute.pk} rejected.")
    return redirect("console:disputes", project.slug)


# --- settings ---------------------------------------------------------------------------------------


def _settings_page(
    request, project, *, project_form=None, qc_form=None, label_form=None, routing_form=None, status=200
):
    config = training_selectors.training_config(project=project)
    initial = {f: getattr(project, f) for f in ProjectSettingsForm.base_fields}
    context = {
        "project": project,
        "can_admin": _is_admin(request, project),
        "project_form": project_form or ProjectSettingsForm(initial=initial),
        "qc_form": qc_form or QualityControlForm(initial={"qc_share": config.qc_share}),
        "label_form": label_form or LabelNameForm(),
        "routing_form": routing_form or RoutingForm(initial={f: getattr(project, f) for f in RoutingForm.base_fields}),
        "routing_used": review_services.routing_budget_used(project),
        "labels": annotation_selectors.labels_with_use(project=project),
        "config": config,
    }
    return render(request, "frontend/console/settings.html", context, status=status)


@never_cache
@login_required
def settings_page(request, slug):
    """Name, instructions (with a preview), labels (add, rename, retire), overlap and the QC
    share, each with one line of explanation and its current value. Auditors read it."""
    return _settings_page(request, project_page(request, slug))


def _settings_form_post(request, project, *, form_class, form_name: str, save, success):
    """A settings form posted: saved through its service and back to the page with a message,
    or the page again with the form's errors (400). `save(cleaned_data)` calls the service;
    `success(cleaned_data, result)` words the message."""
    form = form_class(request.POST)
    if form.is_valid():
        try:
            result = save(form.cleaned_data)
        except TallyError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, success(form.cleaned_data, result))
            return redirect("console:settings", project.slug)
    project.refresh_from_db()  # a failed save may have touched the instance
    return _settings_page(request, project, status=400, **{form_name: form})


@never_cache
@login_required
@require_POST
def settings_project(request, slug):
    project = admin_page(request, slug)
    return _settings_form_post(
        request,
        project,
        form_class=ProjectSettingsForm,
        form_name="project_form",
        save=lambda data: annotation_services.project_update(project=project, **data),
        success=lambda data, _: "Project settings saved.",
    )


@never_cache
@login_required
@require_POST
def settings_routing(request, slug):
    project = admin_page(request, slug)
    return _settings_form_post(
        request,
        project,
        form_class=RoutingForm,
        form_name="routing_form",
        save=lambda data: annotation_services.project_update(project=project, **data),
        success=lambda data, _: "Routing settings saved.",
    )


@never_cache
@login_required
@require_POST
def settings_qc(request, slug):
    project = admin_page(request, slug)
    return _settings_form_post(
        request,
        project,
        form_class=QualityControlForm,
        form_name="qc_form",
        save=lambda data: training_services.config_update(project=project, **data),
        success=lambda data, _: f"Quality-control share is now {data['qc_share']:g}.",
    )


@never_cache
@login_required
@require_POST
def label_add(request, slug):
    project = admin_page(request, slug)
    return _settings_form_post(
        request,
        project,
        form_class=LabelNameForm,
        form_name="label_form",
        save=lambda data: annotation_services.label_create(project=project, name=data["name"]),
        success=lambda _, label: f"Label {label.name} added.",
    )


LABEL_ACTIONS = {
    "rename": "label_rename",
    "retire": "label_retire",
    "restore": "label_restore",
}


@never_cache
@login_required
@require_POST
def label_change(request, slug, label_id, action):
    """Rename, retire or restore one label (retiring deletes nothing)."""
    project = admin_page(request, slug)
    if action not in LABEL_ACTIONS:
        raise Http404
    kwargs = {}
    if action == "rename":
        form = LabelNameForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Give the label a name of at most 100 characters.")
            return redirect("console:settings", project.slug)
        kwargs["name"] = form.cleaned_data["name"]
    try:
        label = getattr(annotation_services, LABEL_ACTIONS[action])(project=project, label_id=label_id, **kwargs)
    except TallyError as exc:
        messages.error(request, exc.message)
    else:
        done = {"rename": "renamed", "retire": "retired: not offered for new labels", "restore": "offered again"}
        messages.success(request, f"Label {label.name} {done[action]}.")
    return redirect("console:settings", project.slug)


# --- bulk accept ------------------------------------------------------------------------------------


def _accept_page(request, project, *, form, accept_form=None, status=200):
    preview, take = None, 0
    if form.is_valid():
        d = form.cleaned_data
        preview = training_selectors.accept_preview(
            project=project, min_confidence=d["min_confidence"], label_ids=[d["label"]] if d["label"] else None
        )
        take = min(preview.count, d["limit"])
        if accept_form is None and preview.version is not None:
            accept_form = AcceptForm(
                initial={**d, "version": preview.version.pk}, labels=annotation_selectors.labels_offered(project)
            )
    context = {
        "project": project,
        "can_admin": _is_admin(request, project),
        "form": form,
        "preview": preview,
        "accept_form": accept_form,
        "take": take,
        "batches": list(training_selectors.accept_batches(project=project)[:20]),
    }
    return render(request, "frontend/console/accept.html", context, status=status)


@never_cache
@login_required
def accept_page(request, slug):
    """Choose a threshold and see what a bulk accept would take, how right the model is at
    that confidence, and the model's warnings; accept (admins), and undo earlier batches."""
    project = project_page(request, slug)
    labels = annotation_selectors.labels_offered(project)
    defaults = {name: field.initial for name, field in AcceptPreviewForm.base_fields.items()}
    form = AcceptPreviewForm({**defaults, **request.GET.dict()}, labels=labels)
    return _accept_page(request, project, form=form, status=200 if form.is_valid() else 400)


@never_cache
@login_required
@require_POST
def accept(request, slug):
    project = admin_page(request, slug)
    labels = annotation_selectors.labels_offered(project)
    form = AcceptForm(request.POST, labels=labels)
    preview_form = AcceptPreviewForm(request.POST, labels=labels)
    if not form.is_valid():
        return _accept_page(request, project, form=preview_form, accept_form=form, status=400)
    d = form.cleaned_data
    version = training_selectors.current_version(project=project)
    if version is not None and training_selectors.version_evaluation(version=version)["no_better_than_baseline"]:
        if not d["understood"]:
            form.add_error("understood", "This model is no better than its baseline: tick this to accept anyway.")
            return _accept_page(request, project, form=preview_form, accept_form=form, status=400)
    try:
        batch = training_services.machine_labels_accept(
            project=project,
            admin=request.user,
            min_confidence=d["min_confidence"],
            label_ids=[d["label"]] if d["label"] else None,
            limit=d["limit"],
            expected_version_id=d["version"],
        )
    except TallyError as exc:
        _form_error(form, exc)
        return _accept_page(request, project, form=preview_form, accept_form=form, status=400)
    messages.success(request, f"Bulk accept {batch.pk}: {batch.accepted} machine label(s) accepted. Undo it below.")
    return redirect("console:accept", project.slug)


@never_cache
@login_required
@require_POST
def accept_undo(request, slug, batch_id):
    project = admin_page(request, slug)
    try:
        batch = training_services.machine_labels_undo(project=project, batch_id=batch_id, actor=request.user)
    except TallyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Bulk accept {batch.pk} undone: {batch.undone} machine label(s) rejected.")
    return redirect("console:accept", project.slug)


# --- review and adjudication (issue 16, item 4; docs/console.md "Review") -------------------------


def _review_config(project) -> dict:
    return {
        "heartbeatUrl": reverse("console:review-heartbeat", args=[project.slug]),
        "closeUrl": reverse("console:review-close", args=[project.slug]),
        "heartbeatMs": int(float(django_settings.TALLY_HEARTBEAT_INTERVAL_SECONDS) * 1000),
        "idleMs": int(float(django_settings.TALLY_IDLE_CUTOFF_SECONDS) * 1000),
        "labelMode": project.label_mode,
    }


def _review_page(request, project, *, position=0, error=None, status=200):
    page = review_selectors.review_page(project=project, position=position)
    labels = [
        (label, str((i + 1) % 10) if i < 10 else "") for i, label in enumerate(project.labels.filter(retired=False))
    ]
    context = {
        "project": project,
        "page": page,
        "item": page.item,
        "labels": labels,
        "key": uuid.uuid4().hex,
        "error": error,
        "config": _review_config(project),
    }
    return render(request, "frontend/console/review.html", context, status=status)


def _position(request) -> int:
    try:
        return max(0, int(request.GET.get("at", request.POST.get("at", 0))))
    except (TypeError, ValueError):
        return 0


@never_cache
@login_required
def review(request, slug):
    """The review page: one text at a time, disputed first, decided by keyboard."""
    project = admin_page(request, slug)
    return _review_page(request, project, position=_position(request))


@never_cache
@login_required
@require_POST
def review_decide(request, slug):
    project = admin_page(request, slug)
    form = ReviewDecisionForm(request.POST)
    if not form.is_valid():
        error = " ".join(e for errs in form.errors.values() for e in errs)
        return _review_page(request, project, position=_position(request), error=error, status=400)
    data = form.cleaned_data
    try:
        review_services.review_decide(
            project=project,
            reviewer=request.user,
            example_id=data["example"],
            decision=data["decision"],
            label_ids=data["labels"],
            idempotency_key=data["key"],
        )
    except TallyError as exc:
        return _review_page(request, project, position=_position(request), error=exc.message, status=exc.status_code)
    messages.success(request, f"Text #{data['example']}: {data['decision']}.")
    url = reverse("console:review", args=[project.slug])
    return redirect(f"{url}?at={_position(request)}" if _position(request) else url)


@never_cache
@login_required
@require_POST
def review_heartbeat(request, slug):
    """The review page is on screen and its reviewer active: the server credits the time."""
    project = admin_page(request, slug)
    try:
        session = review_services.review_heartbeat(project=project, reviewer=request.user)
    except TallyError as exc:
        return JsonResponse({"detail": exc.message, "code": exc.code}, status=exc.status_code)
    return JsonResponse({"session": session.pk, "active_seconds": str(session.active_seconds)})


@never_cache
@login_required
@require_POST
def review_close(request, slug):
    """The reviewer is done: close the session now (the ledger records its time)."""
    project = admin_page(request, slug)
    session = review_services.review_close(project=project, reviewer=request.user)
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse({"closed": session.pk if session else None})
    messages.success(request, "Review session closed; its time is on the ledger.")
    return redirect("console:dashboard", project.slug)
