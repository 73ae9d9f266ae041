"""The ledger's REST API, mounted under /api/ (config/urls.py)."""

from django.urls import include, path

from . import apis

app_name = "labor_ledger"

urlpatterns = [
    path("projects/<slug:slug>/earnings/", apis.EarningsApi.as_view(), name="earnings"),
    path("projects/<slug:slug>/ledger/entries/", apis.EntryListApi.as_view(), name="entry-list"),
    path("projects/<slug:slug>/ledger/manual-entries/", apis.ManualEntryApi.as_view(), name="manual-entry"),
    path("projects/<slug:slug>/ledger/settlements/", apis.SettlementListApi.as_view(), name="settlement-list"),
    path("projects/<slug:slug>/ledger/balances/", apis.BalanceListApi.as_view(), name="balance-list"),
    path("projects/<slug:slug>/ledger/verify/", apis.VerifyApi.as_view(), name="verify"),
    path("projects/<slug:slug>/ledger/checkpoints/", apis.CheckpointsApi.as_view(), name="checkpoints"),
    path("projects/<slug:slug>/pay-policies/", apis.PayPolicyApi.as_view(), name="pay-policies"),
    path(
        "projects/<slug:slug>/annotations/<int:annotation_id>/review/",
        apis.AnnotationReviewApi.as_view(),
        name="annotation-review",
    ),
    path(
        "projects/<slug:slug>/instructions/heartbeat/",
        apis.InstructionsHeartbeatApi.as_view(),
        name="instructions-heartbeat",
    ),
    path("projects/<slug:slug>/instructions/close/", apis.InstructionsCloseApi.as_view(), name="instructions-close"),
    path("projects/<slug:slug>/time-disputes/", apis.TimeDisputeListApi.as_view(), name="time-disputes"),
    path(
        "projects/<slug:slug>/time-disputes/<int:dispute_id>/decision/",
        apis.TimeDisputeDecisionApi.as_view(),
        name="time-dispute-decision",
    ),
    path("", include("labor_ledger.urls_reports")),
]
