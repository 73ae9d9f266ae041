"""The server-rendered pages: who may open them, what they show, and the security headers."""

import json
import re

import pytest
from django.urls import reverse

from annotation.models import Membership
from tests.factories import UserFactory, add_member, make_project


@pytest.fixture
def client_for(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def label_url(project):
    return reverse("frontend:label", args=[project.slug])


def test_label_page_requires_login(client, project):
    response = client.get(label_url(project))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_non_member_gets_404_not_403(client_for, project):
    outsider = UserFactory(username="outsider")
    assert client_for(outsider).get(label_url(project)).status_code == 404


def test_member_of_another_project_gets_404(client_for, project):
    other_project = make_project(name="Other project")
    stranger = add_member(other_project, Membership.Role.ANNOTATOR)
    assert client_for(stranger).get(label_url(project)).status_code == 404


def test_auditor_cannot_label(client_for, project, auditor):
    response = client_for(auditor).get(label_url(project))
    assert response.status_code == 403


@pytest.mark.parametrize("who", ["annotator", "admin_user"])
def test_annotators_and_admins_get_the_labeling_page(request, client_for, project, examples, who):
    user = request.getfixturevalue(who)
    response = client_for(user).get(label_url(project))
    assert response.status_code == 200
    html = response.content.decode()
    for label in project.labels.all():
        assert f'data-label-id="{label.pk}"' in html
    config = json.loads(re.search(r'<script id="labeler-config" type="application/json">(.*?)</script>', html).group(1))
    assert config["slug"] == project.slug
    assert config["left"] == len(examples)
    assert config["submitUrl"] == "/api/attempts/{id}/submit/"


def test_heartbeat_interval_comes_from_settings(client_for, project, annotator, settings):
    settings.TALLY_HEARTBEAT_INTERVAL_SECONDS = 0.25
    html = client_for(annotator).get(label_url(project)).content.decode()
    config = json.loads(re.search(r'type="application/json">(.*?)</script>', html).group(1))
    assert config["heartbeatMs"] == 250


def test_home_lists_only_my_projects_with_role_and_label_link(client_for, project, auditor, annotator):
    other = make_project(name="Secret other project")
    html = client_for(auditor).get(reverse("frontend:home")).content.decode()
    assert project.name in html and "Auditor" in html
    assert other.name not in html
    assert label_url(project) not in html  # auditors do not label

    html = client_for(annotator).get(reverse("frontend:home")).content.decode()
    assert "Annotator" in html and label_url(project) in html


def test_user_text_is_escaped_on_the_page(client_for, admin_user):
    payload = '<img src=x onerror="alert(1)">'
    project = make_project(admin=admin_user, name=f"P {payload}", labels=[payload, "ok"], instructions=payload)
    html = client_for(admin_user).get(label_url(project)).content.decode()
    assert payload not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_pages_send_a_csp_without_inline_script(client_for, project, annotator):
    for response in (
        client_for(annotator).get(label_url(project)),
        client_for(annotator).get(reverse("frontend:home")),
        client_for(annotator).get(reverse("api-docs")),
    ):
        policy = response.headers["Content-Security-Policy"]
        directives = dict((part.strip().split(" ", 1) + [""])[:2] for part in policy.split(";") if part.strip())
        script_src = directives.get("script-src", directives.get("default-src"))
        assert script_src is not None
        assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
        assert directives["object-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_templates_have_no_inline_script_or_handlers(client_for, project, annotator, admin_user):
    pages = [
        client_for(annotator).get(label_url(project)),
        client_for(annotator).get(reverse("frontend:home")),
        client_for(annotator).get(reverse("api-docs")),
    ]
    client_for(annotator).logout()
    pages.append(client_for(annotator).get(reverse("login")))
    for response in pages:
        html = response.content.decode()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, tag
        assert not re.search(r"\son[a-z]+\s*=", html, flags=re.IGNORECASE)
