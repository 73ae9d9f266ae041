"""REST API of the labor ledger. Every answer carries Cache-Control: no-store.

Annotators: their own earnings, and the instruction-reading heartbeat.
Project admins: the project ledger, pay policies (read and create), bonuses and adjustments,
reviewing (rejecting) labels. Auditors: read everything admins read. Nobody edits an entry.
"""

from decimal import ROUND_HALF_UP

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from django.utils.cache import add_never_cache_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import services as annotation_services
from annotation.models import Annotation, InstructionReading, Membership
from annotation.permissions import project_for
from core.roles import ADMINS, READERS

from . import checkpoints, periods, selectors, services
from .models import (
    Balance,
    Clock,
    LedgerCheckpoint,
    LedgerEntry,
    PayPolicy,
    Settlement,
    TimeCategory,
    TimeDispute,
    TimeDisputeDecision,
)

WORKERS = {Membership.Role.ANNOTATOR, Membership.Role.ADMIN}


class NoStoreMixin:
    """Pay is private: no browser or proxy may keep a copy of any answer (errors included)."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        add_never_cache_headers(response)
        return response


# --- serializers (output) ---


class PayPolicyOut(serializers.ModelSerializer):
    class Meta:
        model = PayPolicy
        fields = [
            "id",
            "version",
            "effective_from",
            "currency",
            "piece_rate",
            "gold_piece_rate",
            "overlap_piece_rate",
            "hourly_rate",
            "hourly_clock",
            "hourly_categories",
            "floor_hourly_rate",
            "floor_clock",
            "floor_categories",
            "client_price_per_example",
            "client_price_per_hour",
            "note",
            "created_by",
            "created_at",
        ]


class AnnotatorPayPolicyOut(serializers.ModelSerializer):
    """What an annotator is told about their pay: the rates, not the client's price."""

    class Meta:
        model = PayPolicy
        fields = [
            "version",
            "effective_from",
            "currency",
            "piece_rate",
            "gold_piece_rate",
            "overlap_piece_rate",
            "hourly_rate",
            "hourly_clock",
            "hourly_categories",
            "floor_hourly_rate",
            "floor_clock",
            "floor_categories",
        ]


class EntryOut(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username")
    # Not in an annotator's own rows (OwnEntryOut): optional in the schema of the shared list.
    client_amount = serializers.DecimalField(max_digits=18, decimal_places=6, required=False)
    idempotency_key = serializers.CharField(required=False)
    acting_user = serializers.CharField(source="acting_user.username", allow_null=True, default=None)
    policy_version = serializers.IntegerField(source="policy.version", allow_null=True, default=None)
    reverses = serializers.IntegerField(source="reverses_id", allow_null=True)

    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "seq",
            "annotator",
            "kind",
            "reversed_kind",
            "time_category",
            "attempt",
            "annotation",
            "reading",
            "reverses",
            "policy_version",
            "active_seconds",
            "wall_seconds",
            "counted_seconds",
            "units",
            "amount",
            "currency",
            "floor_amount",
            "client_amount",
            "occurred_at",
            "period_start",
            "acting_user",
            "reason",
            "idempotency_key",
            "prev_hash",
            "entry_hash",
            "created_at",
        ]


class OwnEntryOut(EntryOut):
    class Meta(EntryOut.Meta):
        fields = [f for f in EntryOut.Meta.fields if f not in ("client_amount", "idempotency_key")]


class SettlementOut(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username")

    class Meta:
        model = Settlement
        fields = [
            "id",
            "annotator",
            "period",
            "currency",
            "gross",
            "floor_target",
            "top_up",
            "rounding",
            "payable",
            "active_seconds",
            "wall_seconds",
            "counted_seconds",
            "examples",
            "client_amount",
            "top_up_entry",
            "rounding_entry",
            "created_at",
        ]


class BalanceOut(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username")

    class Meta:
        model = Balance
        fields = ["annotator", "currency", "amount", "entry_count", "last_seq"]


class PeriodOut(serializers.Serializer):
    period = serializers.DateField()
    is_current = serializers.BooleanField()
    is_settled = serializers.BooleanField()
    active_seconds = serializers.DecimalField(max_digits=14, decimal_places=3)
    wall_seconds = serializers.DecimalField(max_digits=14, decimal_places=3)
    counted_seconds = serializers.DecimalField(max_digits=14, decimal_places=3)
    examples = serializers.IntegerField()
    pay = serializers.DecimalField(
        max_digits=18, decimal_places=6, help_text="every entry booked to the period, top-up included once settled"
    )
    earned = serializers.DecimalField(max_digits=18, decimal_places=6, help_text="pay before top-up and rounding")
    piece_pay = serializers.DecimalField(max_digits=18, decimal_places=6)
    hourly_pay = serializers.DecimalField(max_digits=18, decimal_places=6)
    bonus = serializers.DecimalField(max_digits=18, decimal_places=6)
    adjustment = serializers.DecimalField(max_digits=18, decimal_places=6)
    floor_top_up = serializers.DecimalField(max_digits=18, decimal_places=6)
    projected_top_up = serializers.DecimalField(max_digits=18, decimal_places=6)
    floor_amount = serializers.DecimalField(max_digits=18, decimal_places=6)
    total = serializers.DecimalField(max_digits=18, decimal_places=6)
    payable = serializers.DecimalField(
        source="settlement.payable", max_digits=18, decimal_places=6, default=None, allow_null=True
    )
    effective_hourly_rate = serializers.DecimalField(
        max_digits=18, decimal_places=2, allow_null=True, rounding=ROUND_HALF_UP
    )


class TimeCategoryOut(serializers.Serializer):
    time_category = serializers.CharField()
    label = serializers.CharField()
    active_seconds = serializers.DecimalField(source="active", max_digits=14, decimal_places=3)
    wall_seconds = serializers.DecimalField(source="wall", max_digits=14, decimal_places=3)
    paid = serializers.DecimalField(
        max_digits=18, decimal_places=6, help_text="hourly pay for the time, and for submitted texts their piece pay"
    )


class PayLineOut(serializers.Serializer):
    line = serializers.CharField()
    label = serializers.CharField()
    paid = serializers.DecimalField(max_digits=18, decimal_places=6)


class ReadingOut(serializers.ModelSerializer):
    class Meta:
        model = InstructionReading
        fields = ["id", "started_at", "last_active_at", "ended_at", "active_seconds", "wall_seconds", "heartbeat_count"]


# --- the annotator's own earnings ---


class EarningsApi(NoStoreMixin, APIView):
    class EarningsOut(serializers.Serializer):
        project = serializers.SlugField()
        currency = serializers.CharField()
        balance = serializers.DecimalField(max_digits=18, decimal_places=6)
        policy = AnnotatorPayPolicyOut(allow_null=True)
        current = PeriodOut()
        periods = PeriodOut(many=True)
        time_by_category = TimeCategoryOut(many=True)
        other_lines = PayLineOut(
            many=True,
            help_text="pay not tied to a time category: settled top-ups, bonuses, adjustments, and "
            "projected_top_up (projected, period open: what settlement would add now, never written)",
        )
        projected_top_up = serializers.DecimalField(max_digits=18, decimal_places=6)
        total = serializers.DecimalField(
            max_digits=18, decimal_places=6, help_text="time_by_category paid + other_lines: every period's total"
        )
        entries_period = serializers.DateField()
        entries = OwnEntryOut(many=True)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "period", str, description="YYYY-MM-DD: list this period's entries (default: the current one)"
            )
        ],
        responses=EarningsOut,
        description="Your own earnings in this project: never anyone else's.",
    )
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug)
        earnings = selectors.earnings_for(project=project, annotator=request.user)
        period = _period_param(request, default=earnings.current.period)
        entries = selectors.entries_of_period(project=project, annotator=request.user, period=period)[:500]
        payload = {
            "project": project.slug,
            "currency": project.currency,
            "balance": earnings.balance,
            "policy": earnings.policy,
            "current": earnings.current,
            "periods": earnings.periods,
            "time_by_category": earnings.time_by_category,
            "other_lines": earnings.other_lines,
            "projected_top_up": earnings.projected_top_up,
            "total": earnings.total,
            "entries_period": period,
            "entries": entries,
        }
        return Response(self.EarningsOut(payload).data)


def _period_param(request, *, default):
    text = request.query_params.get("period")
    if not text:
        return default
    try:
        return periods.parse_period(text)
    except ValueError as exc:
        raise serializers.ValidationError({"period": "Use a date as YYYY-MM-DD."}) from exc


# --- the project ledger (admins and auditors; an annotator sees their own rows) ---


class EntryListApi(NoStoreMixin, ListAPIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("annotator", str, description="username"),
            OpenApiParameter("period", str, description="YYYY-MM-DD"),
            OpenApiParameter("kind", str, enum=LedgerEntry.Kind.values),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_serializer_class(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no project
            return EntryOut
        project = self._project()
        return EntryOut if selectors.can_read_project_ledger(user=self.request.user, project=project) else OwnEntryOut

    def _project(self):
        if not hasattr(self, "_project_cache"):
            self._project_cache = project_for(user=self.request.user, slug=self.kwargs["slug"])
        return self._project_cache

    def get_queryset(self):
        qs = selectors.entries_visible_to(user=self.request.user, project=self._project())
        params = self.request.query_params
        if params.get("annotator"):
            qs = qs.filter(annotator__username=params["annotator"])
        if params.get("period"):
            qs = qs.filter(period_start=_period_param(self.request, default=None))
        if params.get("kind"):
            qs = qs.filter(kind=params["kind"])
        return qs.select_related("annotator", "acting_user", "policy").order_by("seq")


class ManualEntryApi(NoStoreMixin, APIView):
    class ManualEntryIn(serializers.Serializer):
        annotator = serializers.CharField(help_text="username")
        kind = serializers.ChoiceField(choices=[LedgerEntry.Kind.BONUS, LedgerEntry.Kind.ADJUSTMENT])
        amount = serializers.DecimalField(max_digits=18, decimal_places=6)
        reason = serializers.CharField(max_length=1000)
        idempotency_key = serializers.CharField(max_length=100)

    @extend_schema(request=ManualEntryIn, responses={201: EntryOut})
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        data = self.ManualEntryIn(data=request.data)
        data.is_valid(raise_exception=True)
        annotator = get_user_model().objects.filter(username=data.validated_data.pop("annotator")).first()
        if annotator is None:
            raise serializers.ValidationError({"annotator": "No such user."})
        entry = services.manual_entry_create(
            project=project,
            annotator=annotator,
            actor=request.user,
            **data.validated_data,
        )
        return Response(EntryOut(entry).data, status=status.HTTP_201_CREATED)


class SettlementListApi(NoStoreMixin, ListAPIView):
    serializer_class = SettlementOut

    def get_queryset(self):
        project = project_for(user=self.request.user, slug=self.kwargs["slug"])
        qs = selectors.settlements_visible_to(user=self.request.user, project=project).select_related("annotator")
        return qs.order_by("period", "annotator__username")


class BalanceListApi(NoStoreMixin, ListAPIView):
    serializer_class = BalanceOut

    def get_queryset(self):
        project = project_for(user=self.request.user, slug=self.kwargs["slug"])
        return (
            selectors.balances_visible_to(user=self.request.user, project=project)
            .select_related("annotator")
            .order_by("annotator__username")
        )


class VerifyOut(serializers.Serializer):
    ok = serializers.BooleanField()
    entries = serializers.IntegerField()
    head_seq = serializers.IntegerField()
    head_hash = serializers.CharField()
    problems = serializers.ListField(child=serializers.CharField())


class VerifyApi(NoStoreMixin, APIView):
    @extend_schema(
        responses=VerifyOut,
        description="Recompute the project's hash chain, balances and settlements; list any break. Admins, auditors.",
    )
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        result = selectors.ledger_verify(project=project)
        return Response(
            {
                "ok": result.ok,
                "entries": result.entries,
                "head_seq": result.head_seq,
                "head_hash": result.head_hash,
                "problems": result.problems,
            }
        )


class CheckpointsApi(NoStoreMixin, APIView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        description=(
            "The ledger's signed checkpoints (latest first, at most 50) and the Ed25519 public key that "
            "checks them (null when the server signs nothing): an outside witness compares them with "
            "its copy of the checkpoint file. docs/security-operations.md. Admins, auditors."
        ),
    )
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        rows = LedgerCheckpoint.objects.filter(project=project).order_by("-seq", "-created_at", "-id")[:50]
        return Response(
            {
                "public_key": checkpoints.published_key(),
                "checkpoints": [
                    {**checkpoints.from_row(r).as_dict(), "mac": r.mac, "signature": r.signature} for r in rows
                ],
            }
        )


# --- pay policies ---


class PayPolicyApi(NoStoreMixin, APIView):
    class PayPolicyIn(serializers.Serializer):
        effective_from = serializers.DateTimeField(required=False, help_text="default: now; never in the past")
        currency = serializers.CharField(required=False, help_text="must be the project's currency")
        piece_rate = serializers.DecimalField(max_digits=14, decimal_places=6, min_value=0, required=False)
        gold_piece_rate = serializers.DecimalField(max_digits=14, decimal_places=6, min_value=0, required=False)
        overlap_piece_rate = serializers.DecimalField(max_digits=14, decimal_places=6, min_value=0, required=False)
        hourly_rate = serializers.DecimalField(max_digits=14, decimal_places=6, min_value=0, required=False)
        hourly_clock = serializers.ChoiceField(choices=Clock.choices, required=False)
        hourly_categories = serializers.ListField(
            child=serializers.ChoiceField(choices=TimeCategory.choices), required=False
        )
        floor_hourly_rate = serializers.DecimalField(max_digits=14, decimal_places=6, min_value=0, required=False)
        floor_clock = serializers.ChoiceField(choices=Clock.choices, required=False)
        floor_categories = serializers.ListField(
            child=serializers.ChoiceField(choices=TimeCategory.choices), required=False
        )
        client_price_per_example = serializers.DecimalField(
            max_digits=14, decimal_places=6, min_value=0, required=False
        )
        client_price_per_hour = serializers.DecimalField(max_digits=14, decimal_places=6, min_value=0, required=False)
        note = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(responses=PayPolicyOut(many=True), description="Every version; admins and auditors.")
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        return Response(PayPolicyOut(selectors.pay_policies(project=project), many=True).data)

    @extend_schema(request=PayPolicyIn, responses={201: PayPolicyOut}, description="A new version; admins only.")
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        data = self.PayPolicyIn(data=request.data)
        data.is_valid(raise_exception=True)
        policy = services.pay_policy_create(project=project, created_by=request.user, **data.validated_data)
        return Response(PayPolicyOut(policy).data, status=status.HTTP_201_CREATED)


# --- reviewing labels ---


class AnnotationReviewApi(NoStoreMixin, APIView):
    class ReviewIn(serializers.Serializer):
        status = serializers.ChoiceField(choices=[Annotation.Status.REJECTED, Annotation.Status.ACCEPTED])
        reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")

    class ReviewOut(serializers.ModelSerializer):
        class Meta:
            model = Annotation
            fields = ["id", "example", "annotator", "attempt", "status", "status_changed_at"]

    @extend_schema(
        request=ReviewIn,
        responses=ReviewOut,
        description="Reject a label, or accept it again; the ledger unpays or pays it with new entries.",
    )
    def post(self, request, slug, annotation_id):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        annotation = get_object_or_404(Annotation, pk=annotation_id, project=project)
        data = self.ReviewIn(data=request.data)
        data.is_valid(raise_exception=True)
        annotation = annotation_services.annotation_review(
            annotation=annotation, actor=request.user, **data.validated_data
        )
        return Response(self.ReviewOut(annotation).data)


# --- reading the instructions ---


class InstructionsHeartbeatApi(NoStoreMixin, APIView):
    @extend_schema(
        request=None,
        responses=ReadingOut,
        description="The instructions are on screen and the annotator active (send every 5 s).",
    )
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=WORKERS)
        reading = annotation_services.instructions_heartbeat(project=project, annotator=request.user)
        return Response(ReadingOut(reading).data)


class InstructionsCloseApi(NoStoreMixin, APIView):
    @extend_schema(request=None, responses={204: None}, description="The annotator left the instructions.")
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=WORKERS)
        annotation_services.instructions_close(project=project, annotator=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- time disputes (issue 14, item 6) ---


class DisputeDecisionOut(serializers.ModelSerializer):
    decided_by = serializers.CharField(source="decided_by.username")
    entry_seq = serializers.IntegerField(source="entry.seq", default=None, allow_null=True)

    class Meta:
        model = TimeDisputeDecision
        fields = ["outcome", "decided_by", "reason", "granted_seconds", "entry", "entry_seq", "created_at"]


class TimeDisputeOut(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username")
    status = serializers.SerializerMethodField()
    decision = serializers.SerializerMethodField()

    class Meta:
        model = TimeDispute
        fields = [
            "id",
            "annotator",
            "subject",
            "attempt",
            "day",
            "recorded_seconds",
            "claimed_seconds",
            "note",
            "created_at",
            "status",
            "decision",
        ]

    def get_status(self, dispute) -> str:
        return selectors.dispute_status(dispute)

    @extend_schema_field(DisputeDecisionOut(allow_null=True))
    def get_decision(self, dispute):
        decision = getattr(dispute, "decision", None) if selectors.dispute_status(dispute) != "open" else None
        return DisputeDecisionOut(decision).data if decision is not None else None


class TimeDisputeListApi(NoStoreMixin, APIView):
    class DisputeIn(serializers.Serializer):
        attempt = serializers.IntegerField(required=False, help_text="one of your closed attempts here")
        day = serializers.DateField(required=False, help_text="or a UTC day, YYYY-MM-DD")
        claimed_seconds = serializers.DecimalField(
            max_digits=12, decimal_places=3, help_text="the active time you claim, in seconds"
        )
        note = serializers.CharField(max_length=2000, help_text="what happened")

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=["open", "accepted", "rejected"])],
        responses=TimeDisputeOut(many=True),
        description="Time disputes: your own (annotators); the project's (admins and auditors).",
    )
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug)
        wanted = request.query_params.get("status") or None
        if wanted not in (None, "open", "accepted", "rejected"):
            raise serializers.ValidationError({"status": "Use open, accepted or rejected."})
        disputes = selectors.disputes_visible_to(user=request.user, project=project, status=wanted)[:500]
        return Response(TimeDisputeOut(disputes, many=True).data)

    @extend_schema(
        request=DisputeIn,
        responses={201: TimeDisputeOut},
        description="Contest the active time recorded for one of your attempts, or for one day, "
        "with the duration you claim and a note. An admin accepts or rejects it.",
    )
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=WORKERS, write=True)
        data = self.DisputeIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        dispute = services.time_dispute_create(
            project=project,
            annotator=request.user,
            attempt_id=values.get("attempt"),
            day=values.get("day"),
            claimed_seconds=values["claimed_seconds"],
            note=values["note"],
        )
        return Response(TimeDisputeOut(dispute).data, status=status.HTTP_201_CREATED)


class TimeDisputeDecisionApi(NoStoreMixin, APIView):
    class DecisionIn(serializers.Serializer):
        outcome = serializers.ChoiceField(choices=["accept", "reject"])
        reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
        granted_seconds = serializers.DecimalField(
            max_digits=12,
            decimal_places=3,
            required=False,
            allow_null=True,
            help_text="accept only; default: the claim minus what was recorded",
        )

    @extend_schema(
        request=DecisionIn,
        responses=TimeDisputeOut,
        description="Accept (an adjustment entry in the ledger) or reject (with a reason) an open dispute; admins.",
    )
    def post(self, request, slug, dispute_id):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        dispute = get_object_or_404(TimeDispute, pk=dispute_id, project=project)
        data = self.DecisionIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        services.time_dispute_decide(
            dispute=dispute,
            actor=request.user,
            accept=values["outcome"] == "accept",
            reason=values["reason"],
            granted_seconds=values.get("granted_seconds"),
        )
        dispute = selectors.disputes_visible_to(user=request.user, project=project).get(pk=dispute.pk)
        return Response(TimeDisputeOut(dispute).data)
