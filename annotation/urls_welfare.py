from django.urls import path

from . import apis_welfare

urlpatterns = [
    path("projects/<slug:slug>/welfare/", apis_welfare.WelfarePolicyApi.as_view(), name="welfare-policy"),
    path("projects/<slug:slug>/welfare/status/", apis_welfare.WelfareStatusApi.as_view(), name="welfare-status"),
    path("projects/<slug:slug>/welfare/marks/", apis_welfare.SensitiveMarksApi.as_view(), name="welfare-marks"),
    path(
        "projects/<slug:slug>/welfare/word-list/apply/",
        apis_welfare.WordListApplyApi.as_view(),
        name="welfare-word-list-apply",
    ),
    path("projects/<slug:slug>/breaks/start/", apis_welfare.BreakStartApi.as_view(), name="break-start"),
    path("breaks/end/", apis_welfare.BreakEndApi.as_view(), name="break-end"),
    path("welfare/opt-outs/", apis_welfare.OptOutApi.as_view(), name="welfare-opt-outs"),
]
