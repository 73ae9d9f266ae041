import csv
import io
import json

import pytest
from django.http import StreamingHttpResponse

from annotation import services
from annotation.apis_export import annotation_rows, csv_safe
from annotation.models import Annotation, Membership
from tests.factories import UserFactory, add_examples, add_member
from tests.support.annotators import label_next


def export_url(project, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/projects/{project.slug}/export/" + (f"?{query}" if query else "")


def body_of(response) -> str:
    assert isinstance(response, StreamingHttpResponse), "the export must stream, not build the file in memory"
    return b"".join(response.streaming_content).decode("utf-8")


def label_all(project, annotator, label_names_for_text):
    """Claim and submit every open example for `annotator`, choosing labels by the text."""
    return label_next(project, annotator, label_names_for_text, n=None)


@pytest.fixture
def labeled(project, annotator):
    add_examples(project, ["A fine film", '=HYPERLINK("http://evil.test","x")', 'Line one\nline two, "quoted"'])
    return label_all(project, annotator, lambda text: ["positive"] if "fine" in text else ["negative"])


def test_csv_export_has_every_annotation_with_text_labels_and_annotator(api, project, annotator, labeled):
    response = api(project.created_by).get(export_url(project, file_format="csv"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="{project.slug}-annotations.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(body_of(response))))
    assert [int(r["annotation_id"]) for r in rows] == [a.pk for a in labeled]
    by_text = {r["text"]: r for r in rows}
    assert by_text["A fine film"]["labels"] == "positive"
    # Newlines and quotes inside a text survive the round trip.
    assert by_text['Line one\nline two, "quoted"']["labels"] == "negative"
    assert {r["annotator"] for r in rows} == {annotator.username}
    assert {r["status"] for r in rows} == {"accepted"}


def test_json_export_matches_the_database(api, project, annotator, labeled):
    response = api(project.created_by).get(export_url(project, file_format="json"))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    items = json.loads(body_of(response))
    assert len(items) == Annotation.objects.filter(project=project).count() == 3
    first = items[0]
    assert first["annotation_id"] == labeled[0].pk
    assert first["example_id"] == labeled[0].example_id
    assert first["labels"] == [lbl.name for lbl in labeled[0].labels.all()]
    assert first["annotator"] == annotator.username
    # JSON is not a spreadsheet: the text is exported exactly as stored.
    assert '=HYPERLINK("http://evil.test","x")' in {item["text"] for item in items}


def test_csv_cells_that_would_run_as_formulas_are_neutralised(api, project, annotator, labeled):
    rows = list(csv.DictReader(io.StringIO(body_of(api(project.created_by).get(export_url(project))))))
    texts = {r["text"] for r in rows}
    assert '\'=HYPERLINK("http://evil.test","x")' in texts
    assert not any(t.startswith("=") for t in texts)


@pytest.mark.parametrize("dangerous", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_csv_safe_prefixes_every_formula_trigger(dangerous):
    assert csv_safe(dangerous) == "'" + dangerous


@pytest.mark.parametrize("harmless", ["plain", " =leading space", "a=b", "", 42, None])
def test_csv_safe_leaves_other_cells_alone(harmless):
    assert csv_safe(harmless) == harmless


def test_label_names_are_escaped_too(api, project, annotator):
    services.label_create(project=project, name="-negative-ish")
    add_examples(project, ["meh"])
    label_all(project, annotator, lambda text: ["-negative-ish"])
    rows = list(csv.DictReader(io.StringIO(body_of(api(project.created_by).get(export_url(project))))))
    assert rows[0]["labels"] == "'-negative-ish"


def test_auditor_may_export_annotator_may_not_outsider_sees_nothing(api, project, annotator, auditor, labeled):
    assert api(auditor).get(export_url(project)).status_code == 200
    assert api(annotator).get(export_url(project)).status_code == 403
    assert api(UserFactory()).get(export_url(project)).status_code == 404
    assert api().get(export_url(project)).status_code in (401, 403)


def test_export_is_scoped_to_the_project(api, project, annotator, labeled):
    from tests.factories import make_project

    other = make_project(name="Other", admin=project.created_by)
    other_annotator = add_member(other, Membership.Role.ANNOTATOR)
    add_examples(other, ["other project text"])
    label_all(other, other_annotator, lambda text: ["positive"])

    items = json.loads(body_of(api(project.created_by).get(export_url(project, file_format="json"))))
    assert "other project text" not in {i["text"] for i in items}
    assert len(items) == 3


def test_status_filter_and_multi_label(api, project, annotator, labeled):
    services.annotation_set_status(annotation=labeled[0], status=Annotation.Status.REJECTED)
    project.label_mode = "multi"
    project.save()
    add_examples(project, ["both at once"])
    label_all(project, annotator, lambda text: ["positive", "negative"])

    response = api(project.created_by).get(export_url(project, file_format="json", status="rejected"))
    rejected = json.loads(body_of(response))
    assert [i["annotation_id"] for i in rejected] == [labeled[0].pk]
    rows = list(csv.DictReader(io.StringIO(body_of(api(project.created_by).get(export_url(project))))))
    assert rows[-1]["labels"] == "positive|negative"
    assert {r["status"] for r in rows} == {"accepted", "rejected"}


def test_empty_project_exports_a_header_and_an_empty_list(api, project):
    assert body_of(api(project.created_by).get(export_url(project))).strip() == ",".join(
        ["annotation_id", "example_id", "text", "labels", "annotator", "status", "source", "created_at", "gold_label"]
    )
    assert json.loads(body_of(api(project.created_by).get(export_url(project, file_format="json")))) == []


def test_unknown_format_is_a_clear_400(api, project):
    response = api(project.created_by).get(export_url(project, file_format="xlsx"))
    assert response.status_code == 400
    assert "file_format" in response.json()


def test_rows_are_read_in_chunks_across_boundaries(project, annotator):
    add_examples(project, [f"text {i}" for i in range(7)])
    labeled = label_all(project, annotator, lambda text: ["positive"])
    rows = list(annotation_rows(project=project, chunk_size=3))
    assert [r["annotation_id"] for r in rows] == [a.pk for a in labeled]
