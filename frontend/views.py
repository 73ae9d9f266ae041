from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from annotation.selectors import projects_visible_to


@login_required
def home(request):
    projects = projects_visible_to(request.user)
    return render(request, "frontend/home.html", {"projects": projects})
