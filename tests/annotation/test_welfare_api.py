"""The welfare API (issue 17): limits answered over HTTP across projects and tabs, content
warnings on handed-out texts, marks, opt-outs and breaks, each scoped to who may do it."""

import pytest

from annotation import welfare
from annotation.models import Attempt, Break, SensitiveMark, WelfareOptOut
from tests.factories import UserFactory, add_examples, add_member, make_project


def sensitive(admin, name, n=4, plain=0, **limits):
    project = make_project(admin=admin, name=name)
    texts = add_examples(project, [f"{name} grim {i}" for i in range(n)])
    add_examples(project, [f"{name} mild {i}" for i in range(plain)])
    welfare.policy_set(project=project, sensitive=True, support_text="Call 555-0100 any time.", **limits)
    welfare.marks_set(project=project, example_ids=[t.pk for t in texts], categories=["self_harm"], set_by=admin)
    return project


def test_the_limit_holds_over_http_across_two_projects_and_two_tabs(api, admin_user):
    first = sensitive(admin_user, "One", max_texts_per_session=3)
    second = sensitive(admin_user, "Two", max_texts_per_session=3)
    person = add_member(first)
    add_member(second, user=person)
    client = api(person)
    tab_a = client.post(f"/api/projects/{first.slug}/queue/next/", {}, format="json")
    tab_b = client.post(f"/api/projects/{first.slug}/queue/next/", {"exclude": [tab_a.data["id"]]}, format="json")
    other = client.post(f"/api/projects/{second.slug}/queue/next/", {}, format="json")
    assert [r.status_code for r in (tab_a, tab_b, other)] == [200, 200, 200]
    assert tab_a.data["example"]["content_warnings"] == ["self_harm"]
    client.post(f"/api/attempts/{other.data['id']}/skip/")
    refused = client.post(f"/api/projects/{second.slug}/queue/next/", {}, format="json")
    assert refused.status_code == 409
    assert refused.data["code"] == "exposure_limit"
    assert "continue with non-sensitive work" in refused.data["detail"]
    assert Attempt.objects.filter(annotator=person).count() == 3
    status = client.get(f"/api/projects/{first.slug}/welfare/status/").data
    assert status["limit_reached"] and status["session_texts"] == 3
    assert status["support_text"] == "Call 555-0100 any time."


def test_only_admins_set_the_policy_and_marks(api, project, examples, annotator, admin_user):
    url = f"/api/projects/{project.slug}/welfare/"
    assert api(annotator).patch(url, {"sensitive": True}, format="json").status_code == 403
    response = api(admin_user).patch(url, {"sensitive": True, "max_texts_per_day": 50}, format="json")
    assert response.status_code == 200 and response.data["max_texts_per_day"] == 50
    bad = api(admin_user).patch(url, {"categories": ["gore"]}, format="json")
    assert bad.status_code == 400
    marks = f"/api/projects/{project.slug}/welfare/marks/"
    payload = {"example_ids": [examples[0].pk], "categories": ["hate"]}
    assert api(annotator).post(marks, payload, format="json").status_code == 403
    assert api(admin_user).post(marks, payload, format="json").status_code == 201
    assert SensitiveMark.objects.get().set_by == admin_user
    elsewhere = make_project(admin=admin_user, name="Elsewhere")
    foreign = add_examples(elsewhere, ["not yours"])[0]
    response = api(admin_user).post(marks, {"example_ids": [foreign.pk], "categories": ["hate"]}, format="json")
    assert response.status_code == 404


def test_opt_outs_are_ones_own_and_only_for_ones_projects(api, project, annotator, admin_user):
    client = api(annotator)
    response = client.put(
        "/api/welfare/opt-outs/", {"projects": [project.slug], "categories": ["sexual"]}, format="json"
    )
    assert response.status_code == 200
    assert response.data == {"projects": [project.slug], "categories": ["sexual"]}
    stranger = make_project(admin=UserFactory(), name="Stranger")
    assert client.put("/api/welfare/opt-outs/", {"projects": [stranger.slug]}, format="json").status_code == 400
    assert WelfareOptOut.objects.filter(user=annotator).count() == 2


def test_a_break_over_http(api, admin_user):
    project = sensitive(admin_user, "Rest", n=0, plain=2)
    person = add_member(project)
    client = api(person)
    assert client.post("/api/breaks/end/").status_code == 409
    assert client.post(f"/api/projects/{project.slug}/breaks/start/").status_code == 200
    assert client.post("/api/breaks/end/").status_code == 200
    assert Break.objects.get().ended_at is not None


@pytest.mark.parametrize("payload", [{"example_ids": "x", "categories": ["hate"]}, {"example_ids": [1]}])
def test_bad_marks_are_a_400(api, project, admin_user, payload):
    assert (
        api(admin_user).post(f"/api/projects/{project.slug}/welfare/marks/", payload, format="json").status_code == 400
    )
