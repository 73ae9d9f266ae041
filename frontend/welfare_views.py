"""The annotator's wellbeing page (issue 17, docs/welfare.md): decline sensitive projects or
categories, and see one's own exposure today. Declining changes no pay rate and no access to
other work: the declined texts are simply not handed out."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from annotation import welfare
from annotation.models import SensitiveCategory, WelfareOptOut
from annotation.selectors import projects_visible_to
from core.errors import TallyError


@never_cache
@login_required
def welfare_page(request):
    mine = projects_visible_to(request.user).filter(memberships__user=request.user)
    sensitive = list(mine.filter(welfare__sensitive=True).select_related("welfare").order_by("name").distinct())
    if request.method == "POST":
        slugs = request.POST.getlist("projects")
        chosen = [p for p in sensitive if p.slug in slugs]
        try:
            welfare.opt_outs_set(user=request.user, projects=chosen, categories=request.POST.getlist("categories"))
        except TallyError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Saved. Your pay rate and your other work are unchanged.")
        return redirect("frontend:welfare")
    rows = WelfareOptOut.objects.filter(user=request.user)
    declined_projects = {r.project_id for r in rows if r.project_id}
    declined_categories = {r.category for r in rows if r.category}
    now = timezone.now()
    exposure = []
    for project in sensitive:
        status = welfare.status_for(project=project, user=request.user, now=now)
        exposure.append({"project": project, "status": status, "declined": project.pk in declined_projects})
    return render(
        request,
        "frontend/welfare.html",
        {
            "projects": exposure,
            "categories": [
                {"value": v, "label": label, "declined": v in declined_categories}
                for v, label in SensitiveCategory.choices
            ],
        },
    )
