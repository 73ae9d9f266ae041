"""The console's Welfare page and the dashboard's near-limit panel (issue 17): admins set the
policy and mark texts in bulk (recorded with who set them); auditors read; others get 404."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation import services, welfare
from annotation.models import Membership, SensitiveMark
from tests.factories import UserFactory, add_examples, add_member
from tests.support.pages import nav_keys


@pytest.fixture
def texts(project):
    return add_examples(project, ["He drew a knife.", "A calm day.", "Another knife fight."])


def test_an_admin_marks_texts_in_bulk_by_phrase_and_by_id(client_for, project, texts, admin_user):
    client = client_for(admin_user)
    url = reverse("console:welfare-marks", args=[project.slug])
    response = client.post(url, {"containing": "knife", "categories": ["violence"], "action": "add"})
    assert response.status_code == 302
    response = client.post(url, {"example_ids": f"{texts[1].pk}", "categories": ["other"], "action": "add"})
    assert response.status_code == 302
    marks = set(SensitiveMark.objects.values_list("example_id", "category", "source", "set_by"))
    assert marks == {
        (texts[0].pk, "violence", "admin", admin_user.pk),
        (texts[2].pk, "violence", "admin", admin_user.pk),
        (texts[1].pk, "other", "admin", admin_user.pk),
    }
    assert welfare.policy_of(project).sensitive
    bad = client.post(url, {"example_ids": "x1", "categories": ["violence"]})
    assert bad.status_code == 400 and "whole numbers" in bad.content.decode()


def test_an_admin_saves_the_policy_and_the_word_list(client_for, project, texts, admin_user):
    client = client_for(admin_user)
    form = {
        "sensitive": "on",
        "categories": ["violence", "hate"],
        "max_texts_per_session": 30,
        "max_minutes_per_session": 45,
        "max_texts_per_day": 100,
        "max_minutes_per_day": 180,
        "session_gap_minutes": 15,
        "break_after_minutes": 50,
        "paid_break_minutes_per_hour": 10,
        "support_text": "Call 555-0100.",
        "word_list": "violence: knife",
    }
    assert client.post(reverse("console:welfare-policy", args=[project.slug]), form).status_code == 302
    policy = welfare.policy_of(project)
    assert (policy.max_texts_per_session, policy.word_list) == (30, {"violence": ["knife"]})
    assert client.post(reverse("console:welfare-word-list", args=[project.slug])).status_code == 302
    assert SensitiveMark.objects.filter(source="word_list").count() == 2
    bad = client.post(reverse("console:welfare-policy", args=[project.slug]), {**form, "word_list": "gore: x"})
    assert bad.status_code == 400 and "unknown categories gore" in bad.content.decode()


def test_auditors_read_annotators_and_strangers_do_not(client_for, project, annotator, auditor, texts):
    url = reverse("console:welfare", args=[project.slug])
    page = client_for(auditor).get(url)
    assert page.status_code == 200 and 'id="welfare-policy-form"' not in page.content.decode()
    assert "welfare" in nav_keys(page.content.decode())
    assert client_for(annotator).get(url).status_code == 403
    assert client_for(UserFactory()).get(url).status_code == 404
    assert client_for(auditor).post(reverse("console:welfare-word-list", args=[project.slug])).status_code == 403


def test_the_dashboard_names_people_near_their_limits(client_for, project, admin_user):
    hard = add_examples(project, [f"grim {i}" for i in range(5)])
    welfare.policy_set(project=project, sensitive=True, max_texts_per_session=5)
    welfare.marks_set(project=project, example_ids=[e.pk for e in hard], categories=["hate"], set_by=admin_user)
    busy = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="busy"))
    add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="fresh"))
    now = timezone.now()
    for i in range(4):  # 4 of 5: 80 %
        attempt = services.claim_next(project=project, annotator=busy, now=now + timedelta(seconds=i))
        services.attempt_skip(attempt_id=attempt.pk, annotator=busy, now=now + timedelta(seconds=i))
    html = client_for(admin_user).get(reverse("console:dashboard", args=[project.slug])).content.decode()
    assert 'data-user="busy"' in html and 'data-user="fresh"' not in html
    assert "4 of 5 session texts (80 %)" in html


def test_the_wellbeing_page_saves_opt_outs_and_the_earnings_page_shows_support(client_for, project, annotator):
    welfare.policy_set(project=project, sensitive=True, support_text="Counselling: 555-0100.")
    client = client_for(annotator)
    page = client.get(reverse("frontend:welfare")).content.decode()
    assert f'value="{project.slug}"' in page and "Counselling: 555-0100." in page
    response = client.post(reverse("frontend:welfare"), {"projects": [project.slug], "categories": ["hate"]})
    assert response.status_code == 302
    assert set(annotator.welfare_opt_outs.values_list("project_id", "category")) == {(project.pk, ""), (None, "hate")}
    assert Membership.objects.get(project=project, user=annotator).role == Membership.Role.ANNOTATOR
    earnings = client.get(reverse("earnings:project", args=[project.slug])).content.decode()
    assert 'id="earnings-support"' in earnings and "Counselling: 555-0100." in earnings
    label = client.get(reverse("frontend:label", args=[project.slug])).content.decode()
    assert 'id="support"' in label and "Counselling: 555-0100." in label
