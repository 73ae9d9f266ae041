"""REST API of the Labor Card and the labor reports (auditors' side).

GET /api/projects/<slug>/models/<sequence>/labor-card/        the card's data (JSON)
GET /api/projects/<slug>/labor-reports/?by=&model_version=&file_format=&pseudonymize=
                                                             a report file (CSV, Parquet, JSON)
GET /api/projects/<slug>/models/<sequence>/datasheet/?format=md|json
                                                             the datasheet's labor section

Admins and auditors of the project only (annotators 403, everyone else 404, as every
project-scoped view). Reports are read-only for everyone: every write method answers 403.
A card or per-version report that needs a model version whose labor index is not written yet
answers 409 and says so (labor_index.VersionNotIndexed); nothing is computed on read.
Pay is private: every answer, errors included, carries Cache-Control: no-store.
"""

from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.permissions import project_for
from core.roles import READERS

from .apis import NoStoreMixin
from .pseudonyms import PseudonymKeyMissing
from .reports import build, card, datasheet, writers

READ_ONLY = "Labor reports are read-only: nothing here changes the books."


class ReadOnlyReportMixin(NoStoreMixin):
    """Every write answers 403 to those who may see the project (404 to everyone else)."""

    def _refuse(self, request, slug, **kwargs):
        project_for(user=request.user, slug=slug, roles=READERS, write=True)  # 404 outsiders, 403 others
        raise PermissionDenied(READ_ONLY)

    @extend_schema(exclude=True)
    def post(self, request, slug, **kwargs):
        return self._refuse(request, slug)

    @extend_schema(exclude=True)
    def put(self, request, slug, **kwargs):
        return self._refuse(request, slug)

    @extend_schema(exclude=True)
    def patch(self, request, slug, **kwargs):
        return self._refuse(request, slug)

    @extend_schema(exclude=True)
    def delete(self, request, slug, **kwargs):
        return self._refuse(request, slug)


def version_for(project, sequence: int):
    from training.models import ModelVersion

    version = ModelVersion.objects.filter(project=project, sequence=sequence).select_related("parent").first()
    if version is None:
        raise Http404
    return version


class LaborCardApi(ReadOnlyReportMixin, APIView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        description=(
            "The Labor Card of a model version: scope, labor embodied in its training labels (each once), "
            "unpaid and unused labor, pay (wage bill, effective hourly wages, the floor, the client's price), "
            "the increment over its parent, compute and energy beside the human hours, and the data of its "
            "charts. Money as strings (6 decimal places), hours as numbers. Names the ledger chain head it "
            "was computed from. Admins and auditors. docs/labor-card.md"
        ),
    )
    def get(self, request, slug, sequence):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        version = version_for(project, sequence)
        return Response(card.labor_card(version=version))


class LaborReportQuery(serializers.Serializer):
    # Not `format`: DRF reserves that query parameter for renderer negotiation.
    by = serializers.ChoiceField(choices=build.BY_CHOICES, default="version")
    model_version = serializers.IntegerField(
        required=False, min_value=1, help_text="only the labels this model version was trained on"
    )
    file_format = serializers.ChoiceField(choices=writers.FORMATS, default="csv")
    pseudonymize = serializers.BooleanField(
        default=False, help_text="annotators as keyed pseudonyms (by=annotator); needs TALLY_PSEUDONYM_KEY"
    )


class LaborReportApi(ReadOnlyReportMixin, APIView):
    @extend_schema(
        parameters=[LaborReportQuery],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY,
            (200, "application/json"): OpenApiTypes.OBJECT,
        },
        description=(
            "The project's labor from its ledger, per model version, annotator, period or for the whole "
            "project, as a file. Rows of by=annotator/period/project add up to the ledger's sums; each file "
            "names the ledger chain head it was computed from (columns ledger_head_seq/ledger_head_hash, "
            "Parquet metadata `tally.report`, JSON `ledger_head`, headers X-Tally-Ledger-Head-*). "
            "Admins and auditors."
        ),
    )
    def get(self, request, slug):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        query = LaborReportQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        try:
            report = build.labor_report(
                project=project,
                by=params["by"],
                version=params.get("model_version"),
                pseudonymize=params["pseudonymize"],
            )
        except build.ReportError as exc:
            raise serializers.ValidationError({"model_version": [str(exc)]}) from exc
        except PseudonymKeyMissing as exc:
            raise serializers.ValidationError({"pseudonymize": [str(exc)]}) from exc
        file_format = params["file_format"]
        response = HttpResponse(writers.render(report, file_format), content_type=writers.CONTENT_TYPES[file_format])
        response["Content-Disposition"] = f'attachment; filename="{report.filename_stem}.{file_format}"'
        response["X-Tally-Ledger-Head-Seq"] = str(report.head.seq)
        response["X-Tally-Ledger-Head-Hash"] = report.head.hash
        if report.checkpoint:
            cp = report.checkpoint
            response["X-Tally-Ledger-Checkpoint"] = f"seq={cp['seq']}; at={cp['at']}; key_id={cp['key_id']}"
        return response


class MarkdownRenderer(BaseRenderer):
    media_type = "text/markdown"
    format = "md"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict) and "who_labeled" in data:
            return datasheet.to_markdown(data).encode("utf-8")
        detail = data.get("detail", data) if isinstance(data, dict) else data
        return f"{detail}\n".encode()


class DatasheetApi(ReadOnlyReportMixin, APIView):
    renderer_classes = [JSONRenderer, MarkdownRenderer]

    @extend_schema(
        responses={(200, "application/json"): OpenApiTypes.OBJECT, (200, "text/markdown"): OpenApiTypes.STR},
        description=(
            "The labor section of a model version's datasheet, from the ledger: who labeled it and how many, "
            "over what timeframe, how time was measured, how they were paid (the policies, the wage bill with "
            "top-ups settled and projected, effective hourly wages against the floor), unpaid time, "
            "disagreement, and what the ledger cannot know. ?format=md for Markdown, ?format=json for JSON. "
            "Admins and auditors. docs/labor-card.md"
        ),
    )
    def get(self, request, slug, sequence):
        project = project_for(user=request.user, slug=slug, roles=READERS)
        version = version_for(project, sequence)
        response = Response(datasheet.datasheet(version=version))
        extension = "md" if request.accepted_renderer.format == "md" else "json"
        response["Content-Disposition"] = (
            f'attachment; filename="{project.slug}-v{version.sequence}-datasheet.{extension}"'
        )
        return response
