"""The console, mounted at the site root (config/urls.py): /new-project/ and /projects/<slug>/…"""

from django.urls import path

from . import views

app_name = "console"

P = "projects/<slug:slug>/"

urlpatterns = [
    path("new-project/", views.project_create, name="project-create"),
    path(P, views.dashboard, name="dashboard"),
]
