"""The console's review page over HTTP: who may use it, clear 4xx answers for bad input, a
retried decision changes nothing, heartbeats time the reviewer, and the routing settings."""

import pytest
from django.urls import reverse

from annotation.models import Annotation, Example, ReviewDecision, ReviewSession
from tests.factories import add_examples, make_project
from tests.support.annotators import work
from tests.support.pages import assert_no_inline_script, nav_keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def labeled(project, annotator, examples):
    from datetime import UTC, datetime

    _, annotation = work(project, annotator, start=datetime(2030, 1, 7, 12, tzinfo=UTC))
    return annotation


def test_admins_review_and_others_are_turned_away(
    client_for, project, labeled, annotator, auditor, admin_user, other_admin
):
    url = reverse("console:review", args=[project.slug])
    response = client_for(admin_user).get(url)
    html = response.content.decode()
    assert response.status_code == 200 and f'data-example-id="{labeled.example_id}"' in html
    assert "review" in nav_keys(html) and f">{annotator.username}<" not in html  # labels by pseudonym
    assert_no_inline_script(html)
    assert client_for(annotator).get(url).status_code == 403
    assert client_for(auditor).get(url).status_code == 403
    assert client_for(other_admin).get(url).status_code == 404
    assert "review" not in nav_keys(
        client_for(auditor).get(reverse("console:dashboard", args=[project.slug])).content.decode()
    )


def test_bad_decisions_get_a_clear_4xx_and_write_nothing(client_for, project, labeled, admin_user):
    decide = reverse("console:review-decide", args=[project.slug])
    client = client_for(admin_user)
    other = make_project(admin=admin_user, name="Other")
    foreign_label = other.labels.first().pk
    cases = [
        ({}, 400),
        ({"example": labeled.example_id, "decision": "approve", "key": "k"}, 400),
        ({"example": "x", "decision": "accept", "key": "k"}, 400),
        ({"example": labeled.example_id, "decision": "correct", "key": "k"}, 400),
        ({"example": labeled.example_id, "decision": "correct", "labels": [foreign_label], "key": "k"}, 400),
        ({"example": labeled.example_id, "decision": "correct", "labels": ["abc"], "key": "k"}, 400),
        ({"example": 10**9, "decision": "accept", "key": "k"}, 404),
        ({"example": add_examples(other, ["x"])[0].pk, "decision": "accept", "key": "k"}, 404),
    ]
    for body, status in cases:
        response = client.post(decide, body)
        assert response.status_code == status, (body, response.status_code)
    assert not ReviewDecision.objects.exists()
    assert client.get(decide).status_code == 405


def test_a_retried_decision_is_a_no_op(client_for, project, labeled, admin_user):
    decide = reverse("console:review-decide", args=[project.slug])
    client = client_for(admin_user)
    body = {"example": labeled.example_id, "decision": "accept", "key": "same-key"}
    assert client.post(decide, body).status_code == 302
    assert client.post(decide, body).status_code == 302
    assert ReviewDecision.objects.count() == 1
    assert Annotation.objects.filter(source=Annotation.Source.REVIEW).count() == 1
    # the key again for another decision is a conflict
    assert client.post(decide, {**body, "decision": "reject"}).status_code == 409


def test_heartbeats_time_the_reviewer_and_close_ends_the_session(client_for, project, admin_user, annotator):
    beat = reverse("console:review-heartbeat", args=[project.slug])
    assert client_for(annotator).post(beat).status_code == 403
    client = client_for(admin_user)
    response = client.post(beat)
    assert response.status_code == 200 and response.json()["session"]
    assert client.get(beat).status_code == 405
    close = reverse("console:review-close", args=[project.slug])
    assert client.post(close, HTTP_ACCEPT="application/json").json()["closed"] == response.json()["session"]
    assert ReviewSession.objects.get().ended_at is not None


def test_routing_settings_are_saved_from_the_settings_page(client_for, project, admin_user, auditor):
    url = reverse("console:settings-routing", args=[project.slug])
    body = {
        "doubt_routing": "on",
        "doubt_margin": "0.3",
        "doubt_confidence": "0.85",
        "doubt_max_annotators": "3",
        "doubt_budget": "40",
    }
    assert client_for(auditor).post(url, body).status_code == 403
    assert client_for(admin_user).post(url, {**body, "doubt_margin": "2"}).status_code == 400
    assert client_for(admin_user).post(url, body).status_code == 302
    project.refresh_from_db()
    assert (project.doubt_routing, project.doubt_margin, project.doubt_budget) == (True, 0.3, 40)
    page = client_for(admin_user).get(reverse("console:settings", args=[project.slug])).content.decode()
    assert 'id="routing-used">0 of 40' in page


def test_a_routed_text_says_why_on_the_review_page(client_for, project, labeled, admin_user):
    Example.objects.filter(pk=labeled.example_id).update(routed_reason="doubt", extra_annotations=1)
    html = client_for(admin_user).get(reverse("console:review", args=[project.slug])).content.decode()
    assert 'id="review-routed"' in html and "the model is unsure of it" in html
