"""Routes of the Labor Card and labor reports API, included from labor_ledger/urls.py."""

from django.urls import path

from . import apis_reports

P = "projects/<slug:slug>/"

urlpatterns = [
    path(P + "models/<int:sequence>/labor-card/", apis_reports.LaborCardApi.as_view(), name="labor-card"),
    path(P + "models/<int:sequence>/datasheet/", apis_reports.DatasheetApi.as_view(), name="datasheet"),
    path(P + "labor-reports/", apis_reports.LaborReportApi.as_view(), name="labor-report"),
]
