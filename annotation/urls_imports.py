"""Import routes, included by annotation/urls.py (names live in the `annotation` namespace)."""

from django.urls import path

from . import apis_imports

urlpatterns = [
    path("projects/<slug:slug>/imports/", apis_imports.ImportListCreateApi.as_view(), name="import-list"),
    path("projects/<slug:slug>/imports/<int:batch_id>/", apis_imports.ImportDetailApi.as_view(), name="import-detail"),
]
