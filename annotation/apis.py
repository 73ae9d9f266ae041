"""REST API for projects, the queue and annotations. Views validate, call a service, serialize."""

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied as DRFPermissionDenied
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.pagination import KeysFirstPagination
from core.roles import ADMINS, LABELERS, READERS

from . import selectors, services, welfare
from .models import Annotation, Attempt, Example, Label, Membership, PriorityReason, Project
from .permissions import project_for

# --- serializers (output) ---


class LabelOut(serializers.ModelSerializer):
    class Meta:
        model = Label
        fields = ["id", "name", "order", "retired"]


class ProjectOut(serializers.ModelSerializer):
    labels = LabelOut(many=True, read_only=True)
    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "id",
            "slug",
            "name",
            "instructions",
            "label_mode",
            "annotations_per_example",
            "currency",
            "labels",
            "role",
            "created_at",
        ]

    def get_role(self, project) -> str | None:
        return selectors.role_in_project(user=self.context["request"].user, project=project)


class ExampleOut(serializers.ModelSerializer):
    """A text as an annotator sees it: never its gold label, priority or margin, and only the
    extra columns the project's imports made visible (Project.annotator_meta_columns)."""

    meta = serializers.SerializerMethodField()

    class Meta:
        model = Example
        fields = ["id", "text", "meta", "created_at"]

    def get_meta(self, example) -> dict:
        visible = self.context.get("visible_meta")
        if visible is None:
            visible = example.project.annotator_meta_columns
        return {key: value for key, value in example.meta.items() if key in visible}


class ExampleListOut(serializers.ModelSerializer):
    """An example in a project's list. Admins and auditors also get its gold label, hand-out
    count, priority and the reason for it, and every extra column; annotators get none of them (`reader` False in
    the context), so the schema declares those fields optional rather than read-only."""

    meta = serializers.SerializerMethodField()
    gold_label = serializers.SlugRelatedField(
        slug_field="name", queryset=Label.objects.none(), required=False, allow_null=True
    )
    submitted_count = serializers.IntegerField(required=False)
    priority = serializers.FloatField(required=False)
    priority_reason = serializers.ChoiceField(choices=PriorityReason.choices, required=False)
    # Routing by doubt (annotation.review): labels asked for beyond the overlap, and why.
    extra_annotations = serializers.IntegerField(required=False)
    routed_reason = serializers.ChoiceField(choices=PriorityReason.choices, required=False)

    READERS_ONLY = (
        "gold_label",
        "submitted_count",
        "priority",
        "priority_reason",
        "extra_annotations",
        "routed_reason",
    )

    class Meta:
        model = Example
        fields = [
            "id",
            "text",
            "meta",
            "gold_label",
            "submitted_count",
            "priority",
            "priority_reason",
            "extra_annotations",
            "routed_reason",
            "created_at",
        ]

    def get_fields(self):
        fields = super().get_fields()
        if not self.context.get("reader", True):
            for name in self.READERS_ONLY:
                fields.pop(name)
        return fields

    def get_meta(self, example) -> dict:
        if self.context.get("reader", True):
            return example.meta
        visible = self.context.get("visible_meta", [])
        return {key: value for key, value in example.meta.items() if key in visible}


class AttemptOut(serializers.ModelSerializer):
    example = ExampleOut(read_only=True)

    class Meta:
        model = Attempt
        fields = [
            "id",
            "status",
            "example",
            "claimed_at",
            "shown_at",
            "lease_expires_at",
            "finished_at",
            "active_seconds",
            "wall_seconds",
            "heartbeat_count",
        ]


class AnnotationOut(serializers.ModelSerializer):
    labels = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Annotation
        fields = ["id", "example", "annotator", "attempt", "labels", "status", "source", "created_at"]


# --- projects ---


class ProjectListCreateApi(APIView):
    class ProjectCreateInput(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        instructions = serializers.CharField(required=False, allow_blank=True, default="")
        labels = serializers.ListField(child=serializers.CharField(max_length=100), min_length=1)
        label_mode = serializers.ChoiceField(choices=Project.LabelMode.choices, default=Project.LabelMode.SINGLE)
        annotations_per_example = serializers.IntegerField(min_value=1, max_value=5, default=1)
        currency = serializers.RegexField(r"^[A-Za-z]{3}$", default="USD")

    @extend_schema(responses=ProjectOut(many=True))
    def get(self, request):
        projects = selectors.projects_visible_to(request.user).prefetch_related("labels")
        return Response(ProjectOut(projects, many=True, context={"request": request}).data)

    @extend_schema(request=ProjectCreateInput, responses={201: ProjectOut})
    def post(self, request):
        if not request.user.has_perm("annotation.add_project"):
            raise DRFPermissionDenied("Only Tally admins create projects.")
        data = self.ProjectCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.project_create(created_by=request.user, **data.validated_data)
        return Response(ProjectOut(project, context={"request": request}).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    class ProjectUpdateInput(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        instructions = serializers.CharField(required=False, allow_blank=True)
        annotations_per_example = serializers.IntegerField(min_value=1, max_value=5, required=False)

    @extend_schema(responses=ProjectOut)
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug)
        return Response(ProjectOut(project, context={"request": request}).data)

    @extend_schema(request=ProjectUpdateInput, responses=ProjectOut)
    def patch(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        data = self.ProjectUpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = services.project_update(project=project, **data.validated_data)
        return Response(ProjectOut(project, context={"request": request}).data)


class LabelCreateApi(APIView):
    class LabelCreateInput(serializers.Serializer):
        name = serializers.CharField(max_length=100)

    @extend_schema(request=LabelCreateInput, responses={201: LabelOut})
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        data = self.LabelCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        label = services.label_create(project=project, name=data.validated_data["name"])
        return Response(LabelOut(label).data, status=status.HTTP_201_CREATED)


class MembershipApi(APIView):
    class MembershipInput(serializers.Serializer):
        username = serializers.CharField()
        role = serializers.ChoiceField(choices=Membership.Role.choices)

    class MembershipOut(serializers.Serializer):
        username = serializers.CharField(source="user.username")
        role = serializers.CharField()

    @extend_schema(responses=MembershipOut(many=True))
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        members = project.memberships.select_related("user").order_by("user__username")
        return Response(self.MembershipOut(members, many=True).data)

    NOT_A_MEMBER = (
        "Not a member of this project. New members join through an invitation link "
        "(the console's Members page, or manage.py tally_user invite)."
    )

    @extend_schema(
        request=MembershipInput,
        responses={200: MembershipOut},
        description="Change the role of someone who is already a member (demoting closes their open claims; "
        "a project keeps one admin). People join only through an invitation link, so this answers the same "
        "for a username that does not exist, an inactive account and an account outside the project: "
        "it never tells which usernames exist.",
    )
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        data = self.MembershipInput(data=request.data)
        data.is_valid(raise_exception=True)
        membership = (
            project.memberships.select_related("user")
            .filter(user__username=data.validated_data["username"], user__is_active=True)
            .first()
        )
        if membership is None:
            raise serializers.ValidationError({"username": self.NOT_A_MEMBER})
        membership = services.member_set_role(
            project=project, user=membership.user, role=data.validated_data["role"], actor=request.user
        )
        return Response(self.MembershipOut(membership).data)


class ExampleListApi(ListAPIView):
    """Admins and auditors list every example; annotators only those they worked on."""

    pagination_class = KeysFirstPagination
    serializer_class = ExampleListOut

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if getattr(self, "swagger_fake_view", False):  # the schema describes the readers' answer
            return context
        project, reader = self._project_and_reader()
        return {**context, "reader": reader, "visible_meta": project.annotator_meta_columns}

    def get_queryset(self):
        project, reader = self._project_and_reader()
        examples = selectors.examples_visible_to(user=self.request.user, project=project)
        return examples.select_related("gold_label") if reader else examples

    def _project_and_reader(self):
        if not hasattr(self, "_scope"):
            project = project_for(user=self.request.user, slug=self.kwargs["slug"])
            self._scope = project, selectors.role_in_project(user=self.request.user, project=project) in READERS
        return self._scope


class AnnotationListApi(ListAPIView):
    serializer_class = AnnotationOut

    def get_queryset(self):
        project = project_for(user=self.request.user, slug=self.kwargs["slug"])
        return selectors.annotations_visible_to(user=self.request.user, project=project)


# --- the annotator's loop ---


def attempt_out(attempt: Attempt) -> dict:
    return AttemptOut(attempt, context={"visible_meta": attempt.project.annotator_meta_columns}).data


def handed_out(attempt: Attempt) -> dict:
    """A text handed to the page, with its content warnings (welfare): the page blurs it."""
    data = attempt_out(attempt)
    data["example"]["content_warnings"] = welfare.categories_of(attempt.example_id)
    return data


class QueueNextApi(APIView):
    class QueueNextInput(serializers.Serializer):
        exclude = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)

    @extend_schema(
        request=QueueNextInput,
        responses={200: AttemptOut, 204: None},
        description="Claim the next text (or re-offer an open claim not listed in `exclude`). 204: nothing left.",
    )
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=LABELERS)
        data = self.QueueNextInput(data=request.data)
        data.is_valid(raise_exception=True)
        attempt = services.claim_next(
            project=project,
            annotator=request.user,
            exclude_attempt_ids=data.validated_data["exclude"],
        )
        if attempt is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(handed_out(attempt))


class AttemptHeartbeatApi(APIView):
    @extend_schema(request=None, responses=AttemptOut)
    def post(self, request, attempt_id):
        attempt = services.attempt_heartbeat(attempt_id=attempt_id, annotator=request.user)
        return Response(attempt_out(attempt))


class AttemptSubmitApi(APIView):
    class SubmitInput(serializers.Serializer):
        labels = serializers.ListField(child=serializers.IntegerField(), min_length=1)
        idempotency_key = serializers.CharField(max_length=100, required=False, allow_blank=False)

    @extend_schema(request=SubmitInput, responses={201: AnnotationOut})
    def post(self, request, attempt_id):
        data = self.SubmitInput(data=request.data)
        data.is_valid(raise_exception=True)
        key = data.validated_data.get("idempotency_key") or request.headers.get("Idempotency-Key")
        annotation = services.annotation_submit(
            attempt_id=attempt_id,
            annotator=request.user,
            label_ids=data.validated_data["labels"],
            idempotency_key=key,
        )
        return Response(AnnotationOut(annotation).data, status=status.HTTP_201_CREATED)


class AttemptSkipApi(APIView):
    @extend_schema(request=None, responses=AttemptOut)
    def post(self, request, attempt_id):
        attempt = services.attempt_skip(attempt_id=attempt_id, annotator=request.user)
        return Response(attempt_out(attempt))


class UndoLastApi(APIView):
    @extend_schema(
        request=None, responses=AttemptOut, description="Retract your last label; returns a new claim on that text."
    )
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=LABELERS)
        attempt = services.annotation_undo_last(project=project, annotator=request.user, now=timezone.now())
        return Response(handed_out(attempt))
