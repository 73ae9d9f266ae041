"""REST API for imports: upload a file (admins of the project), follow its batch (admins, auditors).

POST /api/projects/<slug>/imports/            multipart: file + options; Idempotency-Key header
GET  /api/projects/<slug>/imports/            the project's batches, newest first
GET  /api/projects/<slug>/imports/<id>/       one batch: status, counts, per-row report, live progress
"""

from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.roles import ADMINS, READERS

from .imports import formats, jobs
from .imports.progress import import_progress
from .models import ImportBatch
from .permissions import project_for


class ImportBatchListOut(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    progress = serializers.SerializerMethodField(
        help_text="Live progress while pending or running (from the cache; the counts in the row are final "
        "only when the batch has finished): rows_read, rows_imported (not yet committed), rows_duplicate, "
        "rows_skipped, bytes_read, bytes_total, fraction, updated_at, stalled."
    )

    class Meta:
        model = ImportBatch
        fields = [
            "id",
            "project",
            "source_name",
            "file_format",
            "text_column",
            "label_column",
            "options",
            "status",
            "rows_read",
            "rows_imported",
            "rows_duplicate",
            "rows_skipped",
            "error",
            "progress",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_progress(self, batch) -> dict | None:
        return import_progress(batch=batch)


class ImportBatchOut(ImportBatchListOut):
    class Meta(ImportBatchListOut.Meta):
        fields = [*ImportBatchListOut.Meta.fields, "report", "stats"]


class ImportUploadIn(serializers.Serializer):
    """The multipart form of an upload."""

    file = serializers.FileField(help_text="A CSV, TSV or JSONL file (UTF-8).")
    file_format = serializers.ChoiceField(
        choices=ImportBatch.Format.choices,
        required=False,
        allow_blank=True,
        help_text="csv, tsv or jsonl; by default from the file's extension.",
    )
    text_column = serializers.CharField(
        default="text",
        max_length=100,
        help_text="The text's column (header name or 1-based position); several, joined by commas, "
        "are joined into one text: title,description or 2,3.",
    )
    label_column = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=100,
        help_text="Optional gold-label column (name or position).",
    )
    # A flag that defaults to False: an omitted HTML-form boolean always reads as False.
    no_header = serializers.BooleanField(
        default=False, help_text="The first line is data: columns are given by position."
    )
    label_map = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Raw label value -> label name, e.g. 1=World,2=Sports,3=Business,4=Sci-Tech.",
    )
    create_labels = serializers.BooleanField(default=False, help_text="Add labels the project lacks.")
    text_separator = serializers.CharField(
        required=False,
        default=" ",
        trim_whitespace=False,
        allow_blank=True,
        max_length=10,
        help_text="Put between joined text columns (default: a space).",
    )
    unescape_backslashes = serializers.BooleanField(
        default=False, help_text="Decode AG News style backslash escapes (see docs/import.md)."
    )
    encoding = serializers.CharField(required=False, default="utf-8", max_length=40)
    visible_columns = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=500,
        help_text="Extra columns annotators may see, comma-separated (default: none; admins see every column).",
    )


class ImportListCreateApi(ListAPIView):
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = ImportBatchListOut

    InputSerializer = ImportUploadIn

    def get_queryset(self):
        project = project_for(user=self.request.user, slug=self.kwargs["slug"], roles=READERS)
        return ImportBatch.objects.filter(project=project).select_related("project", "created_by")

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={202: ImportBatchOut, 200: ImportBatchOut},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Retrying an upload with the same key returns the first batch (200) instead of "
                "importing the file twice.",
            )
        ],
        description="Upload a file to import; it is imported in the background. 202 with the new batch "
        "(poll its URL, the Location header), or 200 with the earlier batch of the same Idempotency-Key.",
    )
    def post(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=ADMINS, write=True)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        upload = values["file"]
        options = formats.import_options(
            source_name=upload.name,
            file_format=values.get("file_format") or "",
            text_column=values["text_column"],
            label_column=values["label_column"],
            has_header=not values["no_header"],
            text_separator=values["text_separator"],
            label_map=values["label_map"],
            create_labels=values["create_labels"],
            unescape_backslashes=values["unescape_backslashes"],
            encoding=values["encoding"],
            visible_columns=values["visible_columns"],
        )
        key = (request.headers.get("Idempotency-Key") or "").strip() or None
        if key is not None and len(key) > 100:
            raise serializers.ValidationError({"Idempotency-Key": "At most 100 characters."})
        batch, created = jobs.import_upload(
            project=project,
            created_by=request.user,
            upload=upload,
            options=options,
            idempotency_key=key,
        )
        url = reverse("annotation:import-detail", kwargs={"slug": project.slug, "batch_id": batch.pk})
        return Response(
            ImportBatchOut(batch).data,
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
            headers={"Location": url},
        )


class ImportDetailApi(APIView):
    @extend_schema(responses=ImportBatchOut)
    def get(self, request, slug, batch_id):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        batch = ImportBatch.objects.filter(project=project, pk=batch_id).select_related("project", "created_by").first()
        if batch is None:
            raise Http404
        return Response(ImportBatchOut(batch).data)
