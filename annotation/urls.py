from django.urls import include, path

from . import apis

app_name = "annotation"

urlpatterns = [
    path("projects/", apis.ProjectListCreateApi.as_view(), name="project-list"),
    path("projects/<slug:slug>/", apis.ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<slug:slug>/labels/", apis.LabelCreateApi.as_view(), name="label-create"),
    path("projects/<slug:slug>/members/", apis.MembershipApi.as_view(), name="members"),
    path("projects/<slug:slug>/examples/", apis.ExampleListApi.as_view(), name="example-list"),
    path("projects/<slug:slug>/annotations/", apis.AnnotationListApi.as_view(), name="annotation-list"),
    path("projects/<slug:slug>/queue/next/", apis.QueueNextApi.as_view(), name="queue-next"),
    path("projects/<slug:slug>/undo/", apis.UndoLastApi.as_view(), name="undo"),
    path("attempts/<int:attempt_id>/heartbeat/", apis.AttemptHeartbeatApi.as_view(), name="attempt-heartbeat"),
    path("attempts/<int:attempt_id>/submit/", apis.AttemptSubmitApi.as_view(), name="attempt-submit"),
    path("attempts/<int:attempt_id>/skip/", apis.AttemptSkipApi.as_view(), name="attempt-skip"),
    path("", include("annotation.urls_imports")),
    path("", include("annotation.apis_export")),
    path("", include("annotation.urls_welfare")),
    path("", include("annotation.apis_agreement")),
    path("", include("annotation.apis_review")),
]
