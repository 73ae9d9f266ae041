"""Export every annotation of a project as CSV or JSON, streamed.

GET /api/projects/<slug>/export/?file_format=csv|json[&status=accepted|retracted|rejected]

Only the project's admins and auditors may export (annotators 403, outsiders 404, like every
project-scoped view). The response is streamed in keyset-paginated chunks, so a project with
a million annotations never sits in memory at once, and the set is fixed at the request's
start (annotations created while the download runs are not half-included). CSV cells that a
spreadsheet would run as a formula (starting with = + - @ tab or CR) are prefixed with a
single quote (OWASP "CSV injection").
"""

import csv
import json
from collections import defaultdict
from collections.abc import Iterator

from django.db.models import Max
from django.http import StreamingHttpResponse
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from core.roles import READERS
from core.spreadsheet import csv_safe

from .models import Annotation, Project
from .permissions import project_for

CHUNK_SIZE = 2000
CSV_COLUMNS = [
    "annotation_id",
    "example_id",
    "text",
    "labels",
    "annotator",
    "status",
    "source",
    "created_at",
    "gold_label",
]
# Several labels of one annotation in one CSV cell (multi-label projects); JSON keeps a list.
LABEL_SEPARATOR = "|"


def annotation_rows(*, project: Project, status: str | None = None, chunk_size: int = CHUNK_SIZE) -> Iterator[dict]:
    """Every annotation of the project as a plain dict, oldest first, read chunk by chunk.

    Keyset pagination on the primary key (not OFFSET, not a server-side cursor): each chunk is
    one short query plus one for its labels, the same on SQLite and PostgreSQL.
    """
    label_names = dict(project.labels.values_list("id", "name"))
    base = Annotation.objects.filter(project=project).order_by("id")
    if status:
        base = base.filter(status=status)
    last_id = base.aggregate(m=Max("id"))["m"]
    if last_id is None:
        return
    base = base.filter(id__lte=last_id)
    through = Annotation.labels.through
    after = 0
    while True:
        chunk = list(
            base.filter(id__gt=after).values_list(
                "id",
                "example_id",
                "example__text",
                "annotator__username",
                "status",
                "source",
                "created_at",
                "example__gold_label_id",
            )[:chunk_size]
        )
        if not chunk:
            return
        labels_of = defaultdict(list)
        for annotation_id, label_id in (
            through.objects.filter(annotation_id__in=[row[0] for row in chunk])
            .order_by("annotation_id", "label_id")
            .values_list("annotation_id", "label_id")
        ):
            labels_of[annotation_id].append(label_names[label_id])
        for ann_id, example_id, text, annotator, ann_status, source, created_at, gold_id in chunk:
            yield {
                "annotation_id": ann_id,
                "example_id": example_id,
                "text": text,
                "labels": labels_of[ann_id],
                "annotator": annotator,
                "status": ann_status,
                "source": source,
                "created_at": created_at.isoformat(),
                "gold_label": label_names.get(gold_id) if gold_id else None,
            }
        after = chunk[-1][0]


class _Echo:
    """A file-like object csv.writer writes into; each write returns the line instead."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterator[dict]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for row in rows:
        cells = dict(row, labels=LABEL_SEPARATOR.join(row["labels"]), gold_label=row["gold_label"] or "")
        yield writer.writerow([csv_safe(cells[column]) for column in CSV_COLUMNS])


def json_chunks(rows: Iterator[dict]) -> Iterator[str]:
    """A JSON array written piece by piece (one element per line, so it also greps well)."""
    yield "["
    first = True
    for row in rows:
        yield ("\n" if first else ",\n") + json.dumps(row, ensure_ascii=False)
        first = False
    yield "\n]\n"


class ExportRowOut(serializers.Serializer):
    """One element of the JSON export (the schema of what json_chunks writes)."""

    annotation_id = serializers.IntegerField()
    example_id = serializers.IntegerField()
    text = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField())
    annotator = serializers.CharField()
    status = serializers.ChoiceField(choices=Annotation.Status.choices)
    source = serializers.ChoiceField(choices=Annotation.Source.choices)
    created_at = serializers.DateTimeField()
    gold_label = serializers.CharField(allow_null=True)


class ProjectExportApi(APIView):
    class ExportInput(serializers.Serializer):
        # Not `format`: DRF reserves that query parameter for renderer negotiation.
        file_format = serializers.ChoiceField(choices=["csv", "json"], default="csv")
        status = serializers.ChoiceField(choices=Annotation.Status.choices, required=False)

    @extend_schema(
        parameters=[ExportInput],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/json"): ExportRowOut(many=True)},
        description=(
            "Every annotation of the project (all statuses unless `status` is given), oldest first, "
            "streamed as CSV or JSON. Admins and auditors of the project only."
        ),
    )
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        data = self.ExportInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        file_format = data.validated_data["file_format"]
        rows = annotation_rows(project=project, status=data.validated_data.get("status"))
        if file_format == "csv":
            response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
        else:
            response = StreamingHttpResponse(json_chunks(rows), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{project.slug}-annotations.{file_format}"'
        response["Cache-Control"] = "no-store"
        return response


# Included from annotation/urls.py with one line, so this module's routes merge cleanly.
urlpatterns = [
    path("projects/<slug:slug>/export/", ProjectExportApi.as_view(), name="project-export"),
]
