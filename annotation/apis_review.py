"""Review decisions in the API, for machines (the console's review page is for people):
admins decide a text (accept its leading label, correct it, reject its labels) with an
idempotency key, as the page does; admins and auditors read the decisions. docs/console.md (Review)."""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response

from core.roles import ADMINS, READERS

from . import review, selectors
from .models import ReviewDecision
from .permissions import project_for


class ReviewDecisionOut(serializers.ModelSerializer):
    class Meta:
        model = ReviewDecision
        fields = ["id", "example", "decision", "label_ids", "adjudication", "reviewer", "created_at"]


class ReviewDecisionsApi(ListAPIView):
    serializer_class = ReviewDecisionOut

    class DecideInput(serializers.Serializer):
        example = serializers.IntegerField(min_value=1)
        decision = serializers.ChoiceField(choices=ReviewDecision.Decision.choices)
        labels = serializers.ListField(
            child=serializers.IntegerField(), required=False, default=list, help_text="`correct` only: the label ids."
        )
        idempotency_key = serializers.CharField(max_length=100, required=False, allow_blank=False)

    class ListQuery(serializers.Serializer):
        example = serializers.IntegerField(min_value=1, required=False, help_text="Only this text's decisions.")

    @extend_schema(parameters=[ListQuery], description="The project's review decisions, oldest first.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        project = project_for(user=self.request.user, slug=self.kwargs["slug"], roles=READERS)
        query = self.ListQuery(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.review_decisions_of(project=project, example_id=query.validated_data.get("example"))

    @extend_schema(
        request=DecideInput,
        responses={201: ReviewDecisionOut, 200: ReviewDecisionOut},
        description="Decide one text. The same idempotency key (body or Idempotency-Key header) again "
        "returns the first decision (200) and changes nothing.",
    )
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        data = self.DecideInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        key = v.get("idempotency_key") or request.headers.get("Idempotency-Key", "")
        if not key:
            raise serializers.ValidationError({"idempotency_key": "Send an idempotency key (body or header)."})
        before = selectors.review_decisions_of(project=project).filter(reviewer=request.user, idempotency_key=key)
        replay = before.exists()
        decision = review.review_decide(
            project=project,
            reviewer=request.user,
            example_id=v["example"],
            decision=v["decision"],
            label_ids=v["labels"],
            idempotency_key=key,
        )
        code = status.HTTP_200_OK if replay else status.HTTP_201_CREATED
        return Response(ReviewDecisionOut(decision).data, status=code)


urlpatterns = [
    path("projects/<slug:slug>/review/decisions/", ReviewDecisionsApi.as_view(), name="review-decisions"),
]
