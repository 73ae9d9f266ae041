"""REST API of the training domain: runs, versions, predictions, machine labels, explanations.

Every view resolves its project through annotation.permissions.project_for (404 for projects
the user may not see, 403 for roles that may not do this) and reads only from that project.
Imported by the web process: no torch (tests/training/test_no_torch_in_web.py checks).
"""

import math
from collections import Counter

from django.core.cache import cache
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Annotation, Label
from annotation.permissions import project_for
from annotation.selectors import examples_visible_to
from core.errors import Conflict
from core.pagination import KeysFirstPagination
from core.roles import ADMINS, READERS

from . import selectors, services
from .ml.encoder import ENCODER_KEY
from .models import Aggregation, Loop, ModelKind, ModelVersion, Prediction, ProjectTrainingConfig, TrainingRun
from .tasks import explain_cache_key, explain_prediction

SUMMARY_METRICS = ("accuracy", "macro_f1", "ece", "eval_size", "eval_source")

# training.ml.classifiers.HyperParams, with the largest value an admin may set (the worker
# is shared: no project may ask it for a model that does not fit). `seed` is its own setting.
HYPERPARAM_LIMITS = {
    "epochs": 1000,
    "learning_rate": 10.0,
    "weight_decay": 10.0,
    "l2": 1000.0,
    "batch_size": 65536,
    "hidden": 4096,
    "buckets": 1 << 22,
    "dim": 1024,
    "max_length": 512,
    "encoder_learning_rate": 1.0,
}


def metric_summary(metrics: dict | None) -> dict | None:
    if metrics is None:
        return None
    return {k: metrics.get(k) for k in SUMMARY_METRICS}


# --- serializers ----------------------------------------------------------------------


class ConfigOut(serializers.ModelSerializer):
    current_version = serializers.SlugRelatedField(slug_field="sequence", read_only=True)

    class Meta:
        model = ProjectTrainingConfig
        fields = [
            "model_kind",
            "sampling",
            "enabled",
            "retrain_every_n_labels",
            "deep_every_n_labels",
            "min_labels",
            "qc_share",
            "holdout_share",
            "max_gold_eval",
            "train_on_machine_labels",
            "aggregation",
            "hyperparams",
            "seed",
            "current_version",
            "encoder_key",
        ]


class RunOut(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    version = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "status",
            "loop",
            "trigger",
            "requested_by",
            "created_at",
            "first_event_at",
            "started_at",
            "finished_at",
            "attempts",
            "stage",
            "progress",
            "error",
            "version",
        ]

    def get_version(self, run) -> int | None:
        version = getattr(run, "model_version", None)
        return version.sequence if version else None


class VersionOut(serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(slug_field="sequence", read_only=True, allow_null=True)
    run = serializers.PrimaryKeyRelatedField(read_only=True)
    timings = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField()
    labels = serializers.SerializerMethodField()
    is_current = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "sequence",
            "parent",
            "run",
            "kind",
            "loop",
            "is_current",
            "hyperparams",
            "labels",
            "encoder_key",
            "device",
            "device_name",
            "timings",
            "metrics",
            "n_annotations",
            "n_examples",
            "n_annotators",
            "manifest_hash",
            "aggregation",
            "weights_sha256",
            "snapshot_at",
            "created_at",
        ]

    def get_timings(self, v) -> dict:
        return {
            "embedding_seconds": v.embedding_seconds,
            "pool_embedding_seconds": v.pool_embedding_seconds,  # background share (docs/training.md)
            "training_seconds": v.training_seconds,
            "scoring_seconds": v.scoring_seconds,
        }

    def get_metrics(self, v) -> dict:
        return metric_summary(v.metrics)

    def get_labels(self, v) -> list:
        names = self.context.get("label_names", {})
        return [{"id": lid, "name": names.get(lid)} for lid in v.classes]

    def get_is_current(self, v) -> bool:
        return v.pk == self.context.get("current_id")


class VersionDetailOut(VersionOut):
    parent_metrics = serializers.SerializerMethodField()
    evaluation = serializers.SerializerMethodField()

    class Meta(VersionOut.Meta):
        fields = [*VersionOut.Meta.fields, "parent_metrics", "evaluation"]

    def get_evaluation(self, v) -> dict:
        """Headline macro-F1 with its interval, the majority-class baseline beside accuracy,
        per-class recall, training class counts and plain warnings (training/ml/evaluation.py)."""
        return selectors.version_evaluation(version=v)

    def get_metrics(self, v) -> dict:
        return {k: val for k, val in v.metrics.items() if k != "history"}

    def get_parent_metrics(self, v) -> dict | None:
        return metric_summary(v.parent.metrics) if v.parent_id else None


class PredictionOut(serializers.ModelSerializer):
    example = serializers.IntegerField(source="example_id")
    text = serializers.CharField(source="example.text")
    label = serializers.SerializerMethodField()
    version = serializers.IntegerField(source="version.sequence")
    priority = serializers.FloatField(source="example.priority")
    # why the queue places it there (annotation.models.PriorityReason); readers only, like the rest
    priority_reason = serializers.CharField(source="example.priority_reason")
    submitted_count = serializers.IntegerField(source="example.submitted_count")
    gold_label = serializers.IntegerField(source="example.gold_label_id", allow_null=True)

    class Meta:
        model = Prediction
        fields = [
            "example",
            "text",
            "label",
            "confidence",
            "margin",
            "entropy",
            "priority",
            "priority_reason",
            "submitted_count",
            "gold_label",
            "version",
            "updated_at",
        ]

    def get_label(self, p) -> dict:
        return {"id": p.label_id, "name": p.label.name}


def _context(project, request) -> dict:
    return {
        "request": request,
        "label_names": dict(Label.objects.filter(project=project).values_list("id", "name")),
        "current_id": ProjectTrainingConfig.objects.filter(project=project)
        .values_list("current_version_id", flat=True)
        .first(),
    }


# --- config ---------------------------------------------------------------------------


class TrainingConfigApi(APIView):
    class TrainingConfigPatchSerializer(serializers.Serializer):
        model_kind = serializers.ChoiceField(choices=[ModelKind.HASHED, ModelKind.MINILM], required=False)
        sampling = serializers.ChoiceField(choices=ProjectTrainingConfig.Sampling.choices, required=False)
        enabled = serializers.BooleanField(required=False)
        retrain_every_n_labels = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
        deep_every_n_labels = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False)
        min_labels = serializers.IntegerField(min_value=2, max_value=100_000, required=False)
        qc_share = serializers.FloatField(min_value=0.0, max_value=0.5, required=False)
        holdout_share = serializers.FloatField(min_value=0.0, max_value=0.5, required=False)
        max_gold_eval = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False)
        train_on_machine_labels = serializers.BooleanField(required=False)
        aggregation = serializers.ChoiceField(choices=Aggregation.choices, required=False)
        hyperparams = serializers.DictField(required=False)
        seed = serializers.IntegerField(min_value=-(2**31), max_value=2**31 - 1, required=False)

        def validate_hyperparams(self, value: dict) -> dict:
            """Known settings only, each a finite number within HYPERPARAM_LIMITS: free-form JSON
            here reached PostgreSQL (a NUL is refused: 500) and the worker (a huge model: OOM)."""
            errors = {}
            for name, number in value.items():
                limit = HYPERPARAM_LIMITS.get(name)
                if limit is None:
                    errors[name] = f"Unknown; use one of: {', '.join(sorted(HYPERPARAM_LIMITS))}."
                elif isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
                    errors[name] = "A number."
                elif not 0 <= number <= limit:
                    errors[name] = f"Between 0 and {limit}."
            if errors:
                raise serializers.ValidationError(errors)
            return value

    @extend_schema(responses=ConfigOut)
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        return Response(ConfigOut(selectors.training_config(project=project)).data)

    @extend_schema(request=TrainingConfigPatchSerializer, responses=ConfigOut)
    def patch(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        data = self.TrainingConfigPatchSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        config = services.config_update(project=project, **data.validated_data)
        return Response(ConfigOut(config).data)


# --- runs -----------------------------------------------------------------------------


class RunConflictOut(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    run = RunOut(required=False)


class RunListApi(ListAPIView):
    serializer_class = RunOut

    class RunRequestSerializer(serializers.Serializer):
        loop = serializers.ChoiceField(choices=Loop.choices, default=Loop.FAST)

    def get_queryset(self):
        project = project_for(user=self.request.user, slug=self.kwargs["slug"], roles=READERS)
        return selectors.runs_for(project=project).select_related("requested_by")

    @extend_schema(
        request=RunRequestSerializer,
        responses={201: RunOut, 200: RunOut, 409: RunConflictOut},
        description="Queue a training run (admins). 409 with the queued run if one is waiting already; "
        "a deep request upgrades a queued fast run (200).",
    )
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        data = self.RunRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            run = services.training_run_request(
                project=project, requested_by=request.user, loop=data.validated_data["loop"]
            )
        except Conflict as error:
            run = getattr(error, "run", None)
            body = {"detail": error.message, "code": error.code}
            if run is not None:
                body["run"] = RunOut(run).data
            return Response(body, status=status.HTTP_409_CONFLICT)
        created = run.trigger == TrainingRun.Trigger.ADMIN and run.requested_by_id == request.user.pk
        return Response(RunOut(run).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class RunDetailApi(APIView):
    @extend_schema(responses=RunOut)
    def get(self, request, slug, run_id):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        run = get_object_or_404(selectors.runs_for(project=project), pk=run_id)
        return Response(RunOut(run).data)


class EmbeddingsApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        config = selectors.training_config(project=project)
        return Response(selectors.embedding_progress(project=project, encoder_key=config.encoder_key or ENCODER_KEY))

    @extend_schema(request=None, responses={202: OpenApiTypes.OBJECT})
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        chunks = services.embeddings_schedule(project=project)
        config = selectors.training_config(project=project)
        progress = selectors.embedding_progress(project=project, encoder_key=config.encoder_key or ENCODER_KEY)
        return Response({**progress, "chunks_sent": chunks}, status=status.HTTP_202_ACCEPTED)


# --- versions -------------------------------------------------------------------------


def _version(request, slug, sequence) -> tuple:
    project = project_for(user=request.user, slug=slug, roles=READERS)
    return project, get_object_or_404(selectors.versions_for(project=project), sequence=sequence)


class VersionListApi(ListAPIView):
    serializer_class = VersionOut

    def get_queryset(self):
        self.project = project_for(user=self.request.user, slug=self.kwargs["slug"], roles=READERS)
        return selectors.versions_for(project=self.project)

    def get_serializer_context(self):
        return _context(self.project, self.request) if hasattr(self, "project") else super().get_serializer_context()


class VersionDetailApi(APIView):
    @extend_schema(responses=VersionDetailOut)
    def get(self, request, slug, sequence):
        project, version = _version(request, slug, sequence)
        return Response(VersionDetailOut(version, context=_context(project, request)).data)


class LearningCurveApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, slug, sequence):
        _, version = _version(request, slug, sequence)
        return Response(selectors.learning_curve(version=version))


class ManifestApi(ListAPIView):
    """The annotations a version was trained on (paginated), for the Labor Card and audits."""

    class ManifestEntrySerializer(serializers.Serializer):
        annotation = serializers.IntegerField(source="annotation_id")
        example = serializers.IntegerField(source="example_id")
        label = serializers.IntegerField(source="label_id")

    serializer_class = ManifestEntrySerializer

    def get_queryset(self):
        _, version = _version(self.request, self.kwargs["slug"], self.kwargs["sequence"])
        return selectors.manifest_for(version=version)


class VersionAgreementApi(APIView):
    """Agreement over the human labels of the version's manifest, and the aggregation that
    made its training targets (admins and auditors)."""

    @extend_schema(
        parameters=[OpenApiParameter("boot", int, description="Bootstrap resamples (0-2000, default 300).")],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request, slug, sequence):
        _, version = _version(request, slug, sequence)
        query = serializers.IntegerField(min_value=0, max_value=2000)
        try:
            boot = query.run_validation(request.query_params.get("boot", "300"))
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"boot": exc.detail}) from exc
        return Response(selectors.version_agreement(version=version, n_boot=boot))


# --- predictions ----------------------------------------------------------------------


class PredictionListApi(ListAPIView):
    """The current predictions of every example, sortable and filterable (admins, auditors)."""

    serializer_class = PredictionOut
    pagination_class = KeysFirstPagination

    class PredictionFilterSerializer(serializers.Serializer):
        label = serializers.IntegerField(required=False)
        min_confidence = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
        max_confidence = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
        labeled = serializers.BooleanField(required=False, allow_null=True, default=None)
        ordering = serializers.ChoiceField(choices=selectors.PREDICTION_ORDERINGS, default="-confidence")

    @extend_schema(
        parameters=[
            OpenApiParameter("label", int),
            OpenApiParameter("min_confidence", float),
            OpenApiParameter("max_confidence", float),
            OpenApiParameter("labeled", bool),
            OpenApiParameter("ordering", str, enum=list(selectors.PREDICTION_ORDERINGS)),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        project = project_for(user=self.request.user, slug=self.kwargs["slug"], roles=READERS)
        params = self.PredictionFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        f = params.validated_data
        return selectors.predictions_for(
            project=project,
            label_id=f.get("label"),
            min_confidence=f.get("min_confidence"),
            max_confidence=f.get("max_confidence"),
            labeled=f.get("labeled"),
            ordering=f["ordering"],
        )


class AcceptPredictionsApi(APIView):
    class AcceptPredictionsSerializer(serializers.Serializer):
        min_confidence = serializers.FloatField(min_value=0.0, max_value=1.0)
        labels = serializers.ListField(child=serializers.IntegerField(), required=False)
        examples = serializers.ListField(child=serializers.IntegerField(), required=False, max_length=10_000)
        limit = serializers.IntegerField(min_value=1, max_value=10_000, default=500)

    class AcceptedPredictionsSerializer(serializers.Serializer):
        batch = serializers.IntegerField(help_text="The bulk accept's id (the console's Bulk accept page undoes it).")
        accepted = serializers.IntegerField()
        by_label = serializers.DictField(child=serializers.IntegerField(), help_text="Label name -> texts accepted.")
        annotations = serializers.ListField(child=serializers.IntegerField())

    @extend_schema(
        request=AcceptPredictionsSerializer,
        responses={201: AcceptedPredictionsSerializer},
        description="Accept the current model's label for unlabeled examples at or above min_confidence. "
        "They become machine labels (source=machine): never counted as human labor.",
    )
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        data = self.AcceptPredictionsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        batch = services.machine_labels_accept(
            project=project,
            admin=request.user,
            min_confidence=d["min_confidence"],
            label_ids=d.get("labels"),
            example_ids=d.get("examples"),
            limit=d["limit"],
        )
        ids = [a.pk for a in batch.accepted_annotations]
        through = Annotation.labels.through.objects.filter(annotation_id__in=ids)
        by_label = Counter(through.values_list("label__name", flat=True))
        return Response(
            {
                "batch": batch.pk,
                "accepted": batch.accepted,
                "by_label": dict(sorted(by_label.items())),
                "annotations": [a.pk for a in batch.accepted_annotations],
            },
            status=status.HTTP_201_CREATED,
        )


class ExplanationQuery(serializers.Serializer):
    """?version=<sequence>: a positive integer, or a 400 (not a 500 from the lookup)."""

    version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)


class ExplanationApi(APIView):
    """Which tokens pushed the model toward its label (occlusion), computed on demand by a
    worker: 202 while it is being computed (poll again), then 200 with the tokens."""

    @extend_schema(
        parameters=[OpenApiParameter("version", int, description="default: the current version")],
        responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT},
    )
    def get(self, request, slug, example_id):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        example = get_object_or_404(examples_visible_to(user=request.user, project=project), pk=example_id)
        query = ExplanationQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        sequence = query.validated_data.get("version")
        if sequence:
            version = get_object_or_404(selectors.versions_for(project=project), sequence=sequence)
        else:
            version = selectors.current_version(project=project)
            if version is None:
                return Response(
                    {"detail": "There is no trained model for this project yet.", "code": "no_model"},
                    status=status.HTTP_404_NOT_FOUND,
                )
        key = explain_cache_key(version, example.pk)
        result = cache.get(key)
        if result is None or (result.get("status") == "failed" and request.query_params.get("retry")):
            cache.set(key, {"status": "pending", "version": version.sequence, "example": example.pk}, timeout=300)
            explain_prediction.delay(version.pk, example.pk)
            result = cache.get(key)
        if result.get("status") == "ready":
            return Response(result)
        if result.get("status") == "failed":
            return Response(
                {**result, "detail": "Explaining failed; retry with ?retry=1."},
                status=status.HTTP_500_INTERNAL_SERVER_ERROR,
            )
        return Response(result, status=status.HTTP_202_ACCEPTED)
