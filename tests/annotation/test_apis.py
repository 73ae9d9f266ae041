import uuid

import pytest

from annotation.models import Annotation, Membership
from tests.factories import UserFactory, add_member, make_project


def test_project_list_shows_only_my_projects(api, project, annotator):
    make_project(name="Someone else's")
    response = api(annotator).get("/api/projects/")
    assert response.status_code == 200
    assert [p["slug"] for p in response.json()] == [project.slug]
    assert response.json()[0]["role"] == "annotator"


def test_only_tally_admins_create_projects(api, annotator, admin_user):
    from django.contrib.auth.models import Group

    payload = {"name": "New", "labels": ["a", "b"]}
    assert api(annotator).post("/api/projects/", payload, format="json").status_code == 403
    admin_user.groups.add(Group.objects.get(name="Tally admins"))
    response = api(admin_user).post("/api/projects/", payload, format="json")
    assert response.status_code == 201, response.content
    assert [lbl["name"] for lbl in response.json()["labels"]] == ["a", "b"]


def test_foreign_project_is_404_and_auditor_cannot_write(api, project, auditor):
    outsider = UserFactory()
    assert api(outsider).get(f"/api/projects/{project.slug}/").status_code == 404
    assert api(auditor).get(f"/api/projects/{project.slug}/").status_code == 200
    assert api(auditor).patch(f"/api/projects/{project.slug}/", {"name": "x"}, format="json").status_code == 403
    assert api(auditor).post(f"/api/projects/{project.slug}/queue/next/", {}, format="json").status_code == 403


def test_label_loop_over_http_with_idempotent_retry(api, project, examples, annotator):
    client = api(annotator)
    claim = client.post(f"/api/projects/{project.slug}/queue/next/", {}, format="json")
    assert claim.status_code == 200
    attempt_id = claim.json()["id"]
    assert client.post(f"/api/attempts/{attempt_id}/heartbeat/").status_code == 200
    key = str(uuid.uuid4())
    body = {"labels": [project.labels.first().pk], "idempotency_key": key}
    first = client.post(f"/api/attempts/{attempt_id}/submit/", body, format="json")
    retry = client.post(f"/api/attempts/{attempt_id}/submit/", body, format="json")
    assert first.status_code == retry.status_code == 201
    assert first.json()["id"] == retry.json()["id"]
    assert Annotation.objects.filter(attempt_id=attempt_id).count() == 1


def test_submitting_someone_elses_attempt_is_404(api, project, examples, annotator):
    other = add_member(project)
    attempt_id = api(annotator).post(f"/api/projects/{project.slug}/queue/next/", {}, format="json").json()["id"]
    body = {"labels": [project.labels.first().pk]}
    assert api(other).post(f"/api/attempts/{attempt_id}/submit/", body, format="json").status_code == 404


def test_annotator_sees_only_their_own_annotations(api, project, examples, annotator):
    other = add_member(project)
    for user in (annotator, other):
        client = api(user)
        attempt_id = client.post(f"/api/projects/{project.slug}/queue/next/", {}, format="json").json()["id"]
        client.post(f"/api/attempts/{attempt_id}/submit/", {"labels": [project.labels.first().pk]}, format="json")
    mine = api(annotator).get(f"/api/projects/{project.slug}/annotations/").json()["results"]
    assert {a["annotator"] for a in mine} == {annotator.pk}
    admin_view = api(project.created_by).get(f"/api/projects/{project.slug}/annotations/").json()["results"]
    assert len(admin_view) == 2


def test_empty_queue_answers_204(api, project, annotator):
    assert api(annotator).post(f"/api/projects/{project.slug}/queue/next/", {}, format="json").status_code == 204


def test_mass_assignment_of_annotator_is_ignored(api, project, examples, annotator):
    victim = add_member(project, Membership.Role.ANNOTATOR)
    client = api(annotator)
    attempt_id = client.post(f"/api/projects/{project.slug}/queue/next/", {}, format="json").json()["id"]
    body = {"labels": [project.labels.first().pk], "annotator": victim.pk, "status": "rejected"}
    response = client.post(f"/api/attempts/{attempt_id}/submit/", body, format="json")
    assert response.status_code == 201
    annotation = Annotation.objects.get(pk=response.json()["id"])
    assert annotation.annotator_id == annotator.pk and annotation.status == "accepted"


@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_are_served(api, admin_user, url):
    response = api(admin_user).get(url)
    assert response.status_code == 200


def test_example_list_pages_in_id_order_and_annotators_see_only_their_own(api, project, examples, annotator, auditor):
    from rest_framework.pagination import PageNumberPagination

    from annotation.models import Example

    ids = list(Example.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    make_project(name="Other").examples.create(text="not listed", text_hash="x" * 64)
    client = api(auditor)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PageNumberPagination, "page_size", 2)
        pages = [client.get(f"/api/projects/{project.slug}/examples/", {"page": n}).json() for n in (1, 2)]
        mine = api(annotator).get(f"/api/projects/{project.slug}/examples/").json()
    assert [e["id"] for page in pages for e in page["results"]] == ids[:4]
    assert pages[0]["count"] == len(ids) and pages[0]["next"].endswith("page=2")
    assert mine["count"] == 0  # an annotator lists only the texts they worked on
    claim = api(annotator).post(f"/api/projects/{project.slug}/queue/next/", {}, format="json").json()
    mine = api(annotator).get(f"/api/projects/{project.slug}/examples/").json()
    assert [e["id"] for e in mine["results"]] == [claim["example"]["id"]]
