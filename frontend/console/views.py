"""The console's pages. Each view resolves its project through `access` (404 outside the
project, 403 for a role that may not use the page), validates a form, calls one service or
selector, and renders; nothing is written on GET. Domain errors (core.errors.TallyError) are
shown in the form that caused them."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from annotation import services as annotation_services
from core.errors import TallyError

from . import selectors
from .access import project_page
from .forms import ProjectCreateForm


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
            return redirect("console:dashboard", project.slug)
    return render(request, "frontend/console/project_create.html", {"form": form})


@never_cache
@login_required
def dashboard(request, slug):
    project = project_page(request, slug)
    board = selectors.dashboard(project=project)
    return render(request, "frontend/console/dashboard.html", {"project": project, "board": board})
