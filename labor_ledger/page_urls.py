"""The annotator's earnings pages, mounted under /earnings/ (config/urls.py)."""

from django.urls import path

from . import views

app_name = "earnings"

urlpatterns = [
    path("", views.earnings_index, name="index"),
    path("<slug:slug>/", views.earnings_page, name="project"),
    path("<slug:slug>/disputes/", views.earnings_dispute, name="dispute"),
]
