from django.urls import path

from . import views, welfare_views

app_name = "frontend"

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<slug:slug>/label/", views.label, name="label"),
    path("projects/<slug:slug>/label/status.json", views.label_status, name="label-status"),
    path("wellbeing/", welfare_views.welfare_page, name="welfare"),
]
