"""No input gets a 5xx (issue 15, item 4): the cases the outside audit found, each asked
directly, and deeper generated bodies than schemathesis makes on its own."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from annotation.imports import formats
from annotation.models import Membership
from core.errors import ValidationFailed
from core.parsers import MAX_JSON_DEPTH
from tests.factories import UserFactory, add_examples, add_member, make_project


@pytest.fixture
def project(db):
    project = make_project(admin=UserFactory(), labels=["yes", "no"])
    add_examples(project, ["one", "two"])
    return project


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def nested(depth: int, *, kind: str = "list") -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


# --- JSON depth ---------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 50_000, 200_000])
@pytest.mark.parametrize("kind", ["list", "object"])
def test_deeply_nested_json_bodies_are_400(project, depth, kind):
    annotator = add_member(project)
    response = client_for(annotator).post(
        f"/api/projects/{project.slug}/queue/next/", nested(depth, kind=kind), content_type="application/json"
    )
    assert response.status_code == 400, response.content[:300]
    assert "nested" in response.json()["detail"]


def test_json_at_the_depth_limit_is_parsed(project):
    annotator = add_member(project)
    body = nested(MAX_JSON_DEPTH - 1)
    response = client_for(annotator).post(
        f"/api/projects/{project.slug}/queue/next/", body, content_type="application/json"
    )
    assert response.status_code < 500


@pytest.mark.parametrize("depth", [70, 5_000, 60_000])
def test_deep_bodies_to_every_writable_endpoint_are_4xx(project, depth):
    admin = project.memberships.get(role=Membership.Role.ADMIN).user
    slug = project.slug
    urls = [
        f"/api/projects/{slug}/",
        f"/api/projects/{slug}/labels/",
        f"/api/projects/{slug}/members/",
        f"/api/projects/{slug}/queue/next/",
        "/api/projects/",
        "/api/attempts/1/submit/",
    ]
    client = client_for(admin)
    for url in urls:
        for method in (client.post, client.patch, client.put):
            response = method(url, nested(depth, kind="object"), content_type="application/json")
            assert response.status_code < 500, (url, method.__name__, response.status_code)


# --- import encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["rot13", "rot_13", "zlib", "base64", "idna", "hex", "bz2", "uu", "punycode"])
def test_codecs_that_are_not_text_encodings_are_refused(encoding):
    with pytest.raises(ValidationFailed, match="encoding") as caught:
        formats.import_options(source_name="a.csv", encoding=encoding)
    assert caught.value.code == "invalid_encoding"


@pytest.mark.parametrize("encoding", ["utf-8", "UTF8", "latin-1", "cp1252", "iso-8859-15", "shift_jis"])
def test_ordinary_text_encodings_are_accepted(encoding):
    assert formats.import_options(source_name="a.csv", encoding=encoding).encoding


@pytest.mark.parametrize("encoding", ["rot13", "zlib", "base64", "idna"])
def test_an_import_with_a_bad_encoding_is_400(project, encoding):
    admin = project.memberships.get(role=Membership.Role.ADMIN).user
    upload = SimpleUploadedFile("a.csv", b"text\nhello\n", content_type="text/csv")
    response = client_for(admin).post(
        f"/api/projects/{project.slug}/imports/",
        {"file": upload, "text_column": "text", "encoding": encoding},
        format="multipart",
    )
    assert response.status_code == 400, response.content[:300]


# --- query parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "0x10", "9" * 40, "1e3"])
def test_explanation_version_must_be_a_number(project, value):
    admin = project.memberships.get(role=Membership.Role.ADMIN).user
    example = project.examples.first()
    response = client_for(admin).get(
        f"/api/projects/{project.slug}/examples/{example.pk}/explanation/", {"version": value}
    )
    assert response.status_code == 400, response.status_code


# --- charts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", [r"$\undefinedmacro$", "$x^$", r"$\frac{$", "50$ and 60$"])
def test_chart_labels_are_drawn_literally(label):
    from training.charts import confusion_matrix_svg

    svg = confusion_matrix_svg({"labels": [label, "plain"], "matrix": [[1, 0], [0, 1]]})
    assert "<svg" in svg
    from html import escape

    assert escape(label, quote=False) in svg


def test_json_depth_is_reported_in_the_body(project):
    annotator = add_member(project)
    response = client_for(annotator).post(
        f"/api/projects/{project.slug}/queue/next/", nested(50_000), content_type="application/json"
    )
    assert json.loads(response.content)["detail"]


@pytest.mark.django_db
def test_a_nul_in_a_query_parameter_is_a_400_not_a_database_error(client, admin_user):
    """Found by the schemathesis run: ?annotator=%00 on the ledger entries reached PostgreSQL."""
    project = make_project(admin=admin_user)
    client.force_login(admin_user)
    response = client.get(f"/api/projects/{project.slug}/ledger/entries/", {"annotator": "a\x00b"})
    assert response.status_code == 400 and response.json()["code"] == "nul_in_query"
