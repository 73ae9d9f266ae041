"""Agreement figures in the API: the project's (admins and auditors), Dawid-Skene's estimate of
each annotator's reliability (admins and auditors), and one's own (any labeler, nobody else's
figures and no gold label). docs/agreement.md."""

from datetime import UTC, datetime, time

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.roles import LABELERS, READERS

from . import agreement
from .models import Label
from .permissions import project_for

MAX_BOOT = 2000


class AgreementQuery(serializers.Serializer):
    label = serializers.CharField(required=False, help_text="Only texts someone gave this label (its name).")
    since = serializers.DateField(required=False, help_text="Labels made on or after this UTC day.")
    until = serializers.DateField(required=False, help_text="Labels made before this UTC day.")
    period = serializers.ChoiceField(choices=agreement.PERIODS, default="week")
    boot = serializers.IntegerField(min_value=0, max_value=MAX_BOOT, default=500, help_text="Bootstrap resamples.")
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)


def _day(d):
    return datetime.combine(d, time.min, tzinfo=UTC) if d else None


class ProjectAgreementApi(APIView):
    @extend_schema(parameters=[AgreementQuery], responses=OpenApiTypes.OBJECT)
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        q = AgreementQuery(data=request.query_params)
        q.is_valid(raise_exception=True)
        data = q.validated_data
        label_id = None
        if data.get("label"):
            label_id = Label.objects.filter(project=project, name=data["label"]).values_list("pk", flat=True).first()
            if label_id is None:
                raise serializers.ValidationError({"label": f"No label {data['label']!r} in this project."})
        return Response(
            agreement.project_agreement(
                project=project,
                label_id=label_id,
                since=_day(data.get("since")),
                until=_day(data.get("until")),
                period=data["period"],
                n_boot=data["boot"],
                seed=data["seed"],
            )
        )


class ReliabilityApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        return Response(agreement.annotator_reliability(project=project))


class OwnAgreementApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("period", str, enum=list(agreement.PERIODS))], responses=OpenApiTypes.OBJECT
    )
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=LABELERS)
        period = request.query_params.get("period", "week")
        if period not in agreement.PERIODS:
            raise serializers.ValidationError({"period": f"Use one of {', '.join(agreement.PERIODS)}."})
        return Response(agreement.own_agreement(project=project, user=request.user, period=period))


urlpatterns = [
    path("projects/<slug:slug>/agreement/", ProjectAgreementApi.as_view(), name="agreement"),
    path("projects/<slug:slug>/agreement/reliability/", ReliabilityApi.as_view(), name="agreement-reliability"),
    path("projects/<slug:slug>/agreement/mine/", OwnAgreementApi.as_view(), name="agreement-mine"),
]
