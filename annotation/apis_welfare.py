"""REST API for annotator welfare (issue 17, docs/welfare.md). Views validate, call a
service, serialize. Admins set the policy and the marks; everyone reads their own status,
sets their own opt-outs and takes their own breaks."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.roles import ADMINS, ANY_ROLE, LABELERS

from . import welfare
from .models import Project
from .models_welfare import SensitiveCategory, WelfareOptOut, WelfarePolicy
from .permissions import project_for


class WelfarePolicyOut(serializers.ModelSerializer):
    updated_at = serializers.DateTimeField(allow_null=True, read_only=True)  # null: never set, defaults shown

    class Meta:
        model = WelfarePolicy
        exclude = ["project"]


class WelfarePolicyApi(APIView):
    class PolicyInput(serializers.Serializer):
        sensitive = serializers.BooleanField(required=False)
        categories = serializers.ListField(child=serializers.CharField(max_length=20), required=False)
        max_texts_per_session = serializers.IntegerField(min_value=0, max_value=100000, required=False)
        max_minutes_per_session = serializers.IntegerField(min_value=0, max_value=1440, required=False)
        max_texts_per_day = serializers.IntegerField(min_value=0, max_value=100000, required=False)
        max_minutes_per_day = serializers.IntegerField(min_value=0, max_value=1440, required=False)
        session_gap_minutes = serializers.IntegerField(min_value=1, max_value=1440, required=False)
        break_after_minutes = serializers.IntegerField(min_value=0, max_value=1440, required=False)
        paid_break_minutes_per_hour = serializers.IntegerField(min_value=0, max_value=30, required=False)
        support_text = serializers.CharField(allow_blank=True, max_length=5000, required=False)
        word_list = serializers.DictField(required=False)

    @extend_schema(responses=WelfarePolicyOut, description="The project's welfare policy (admins).")
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS)
        policy = welfare.policy_of(project) or WelfarePolicy(project=project)
        return Response(WelfarePolicyOut(policy).data)

    @extend_schema(request=PolicyInput, responses=WelfarePolicyOut)
    def patch(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        data = self.PolicyInput(data=request.data)
        data.is_valid(raise_exception=True)
        policy = welfare.policy_set(project=project, **data.validated_data)
        return Response(WelfarePolicyOut(policy).data)


class WelfareStatusApi(APIView):
    @extend_schema(responses=dict, description="Your own exposure, the limits and the support text.")
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ANY_ROLE)
        return Response(welfare.status_for(project=project, user=request.user))


class SensitiveMarksApi(APIView):
    class MarksInput(serializers.Serializer):
        example_ids = serializers.ListField(child=serializers.IntegerField(), min_length=1, max_length=10000)
        categories = serializers.ListField(child=serializers.CharField(max_length=20), min_length=1)
        action = serializers.ChoiceField(choices=["add", "clear"], default="add")
        detail = serializers.CharField(allow_blank=True, max_length=200, required=False, default="")

    @extend_schema(request=MarksInput, responses=dict, description="Mark texts sensitive in bulk (or clear marks).")
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        data = self.MarksInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        if v["action"] == "clear":
            n = welfare.marks_clear(project=project, example_ids=v["example_ids"], categories=v["categories"])
            return Response({"removed": n})
        n = welfare.marks_set(
            project=project,
            example_ids=v["example_ids"],
            categories=v["categories"],
            set_by=request.user,
            detail=v["detail"],
        )
        return Response({"added": n}, status=status.HTTP_201_CREATED)


class WordListApplyApi(APIView):
    @extend_schema(request=None, responses=dict, description="Run the project's word list over all its texts.")
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        return Response({"added": welfare.word_list_apply(project=project)})


def break_out(brk) -> dict:
    return {
        "id": brk.pk,
        "started_at": brk.started_at,
        "ended_at": brk.ended_at,
        "credited_seconds": brk.credited_seconds,
        "paid_seconds": brk.paid_seconds,
    }


class BreakStartApi(APIView):
    @extend_schema(request=None, responses=dict, description="Start a break (the page prompts one).")
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=LABELERS)
        return Response(break_out(welfare.break_start(project=project, user=request.user)))


class BreakEndApi(APIView):
    @extend_schema(request=None, responses=dict, description="End your break; its paid part goes to the ledger.")
    def post(self, request):
        return Response(break_out(welfare.break_end(user=request.user)))


class OptOutApi(APIView):
    class OptOutInput(serializers.Serializer):
        projects = serializers.ListField(child=serializers.SlugField(), required=False, default=list)
        categories = serializers.ListField(
            child=serializers.ChoiceField(choices=SensitiveCategory.values), required=False, default=list
        )

    @staticmethod
    def _out(user) -> dict:
        rows = WelfareOptOut.objects.filter(user=user).select_related("project")
        return {
            "projects": sorted(r.project.slug for r in rows if r.project_id),
            "categories": sorted(r.category for r in rows if r.category),
        }

    @extend_schema(responses=dict, description="The sensitive projects and categories you declined.")
    def get(self, request):
        return Response(self._out(request.user))

    @extend_schema(request=OptOutInput, responses=dict, description="Replace your opt-outs. Pay never changes.")
    def put(self, request):
        data = self.OptOutInput(data=request.data)
        data.is_valid(raise_exception=True)
        slugs = data.validated_data["projects"]
        mine = Project.objects.filter(slug__in=slugs, memberships__user=request.user)
        if mine.count() != len(set(slugs)):
            return Response({"detail": "You can decline only projects you are a member of.", "code": "invalid"}, 400)
        welfare.opt_outs_set(user=request.user, projects=list(mine), categories=data.validated_data["categories"])
        return Response(self._out(request.user))
