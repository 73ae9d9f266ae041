from django.urls import path

from . import apis

app_name = "training"

P = "projects/<slug:slug>/"

urlpatterns = [
    path(P + "training/config/", apis.TrainingConfigApi.as_view(), name="config"),
    path(P + "training/runs/", apis.RunListApi.as_view(), name="run-list"),
    path(P + "training/runs/<int:run_id>/", apis.RunDetailApi.as_view(), name="run-detail"),
    path(P + "training/embeddings/", apis.EmbeddingsApi.as_view(), name="embeddings"),
    path(P + "models/", apis.VersionListApi.as_view(), name="version-list"),
    path(P + "models/<int:sequence>/", apis.VersionDetailApi.as_view(), name="version-detail"),
    path(P + "models/<int:sequence>/learning-curve/", apis.LearningCurveApi.as_view(), name="learning-curve"),
    path(P + "models/<int:sequence>/manifest/", apis.ManifestApi.as_view(), name="manifest"),
    path(P + "models/<int:sequence>/agreement/", apis.VersionAgreementApi.as_view(), name="version-agreement"),
    path(P + "predictions/", apis.PredictionListApi.as_view(), name="prediction-list"),
    path(P + "predictions/accept/", apis.AcceptPredictionsApi.as_view(), name="prediction-accept"),
    path(P + "examples/<int:example_id>/explanation/", apis.ExplanationApi.as_view(), name="explanation"),
]
