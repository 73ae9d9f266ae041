"""The console's pages per role: admins use them, auditors read, annotators and outsiders are
turned away (403 / 404), nothing changes on GET and every form needs its CSRF token."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from annotation import services as annotation_services
from annotation.models import Attempt, Invitation, Membership, Project
from tests.factories import UserFactory, add_examples
from tests.support.pages import assert_no_inline_script, nav_keys

pytestmark = pytest.mark.django_db
PASSPHRASE = "a long passphrase 42"


# --- the project bar and the home page --------------------------------------------------------------


def test_the_project_bar_shows_each_role_what_it_may_use(client_for, project, annotator, auditor, admin_user):
    dashboard = reverse("console:dashboard", args=[project.slug])
    label = reverse("frontend:label", args=[project.slug])
    admin_nav = nav_keys(client_for(admin_user).get(dashboard).content.decode())
    assert admin_nav[:3] == ["dashboard", "label", "earnings"]
    assert "labor-cards" in admin_nav
    auditor_nav = nav_keys(client_for(auditor).get(dashboard).content.decode())
    assert "label" not in auditor_nav and "earnings" not in auditor_nav and "dashboard" in auditor_nav
    annotator_nav = nav_keys(client_for(annotator).get(label).content.decode())
    assert annotator_nav == ["label", "earnings"]


def test_the_project_bar_is_on_the_pages_of_other_apps(client_for, project, admin_user):
    for url in (
        reverse("earnings:project", args=[project.slug]),
        reverse("labor_card:index", args=[project.slug]),
        reverse("frontend:label", args=[project.slug]),
    ):
        html = client_for(admin_user).get(url).content.decode()
        assert 'aria-label="Project"' in html, url
        assert 'aria-current="page"' in html, url


def test_home_lists_projects_with_progress_and_links_by_role(client_for, project, annotator, auditor, admin_user):
    add_examples(project, ["one", "two", "three", "four"])
    project.examples.filter(text="one").update(submitted_count=1)
    html = client_for(admin_user).get(reverse("frontend:home")).content.decode()
    assert '<progress value="1" max="4">' in html
    assert "1 of 4 texts labeled, 3 labels to go" in html
    assert reverse("console:dashboard", args=[project.slug]) in html
    html = client_for(annotator).get(reverse("frontend:home")).content.decode()
    assert f'href="{reverse("console:dashboard", args=[project.slug])}"' not in html
    assert_no_inline_script(html)


def test_new_project_button_only_for_tally_admins(client_for, admin_user, tally_admin):
    html = client_for(tally_admin).get(reverse("frontend:home")).content.decode()
    assert reverse("console:project-create") in html
    plain = UserFactory(username="plain")
    assert reverse("console:project-create") not in client_for(plain).get(reverse("frontend:home")).content.decode()
    assert client_for(plain).get(reverse("console:project-create")).status_code == 403


def test_create_a_project_from_the_form(client_for, tally_admin):
    client = client_for(tally_admin)
    response = client.post(
        reverse("console:project-create"),
        {
            "name": "Topics",
            "labels": "World\nSports\n\nBusiness",
            "label_mode": "single",
            "annotations_per_example": 2,
            "currency": "eur",
            "instructions": "Pick the topic.",
        },
    )
    project = Project.objects.get(name="Topics")
    assert response.status_code == 302 and response.url == reverse("console:import", args=[project.slug])
    assert list(project.labels.values_list("name", flat=True)) == ["World", "Sports", "Business"]
    assert project.currency == "EUR" and project.annotations_per_example == 2
    assert project.memberships.get().user == tally_admin


def test_a_domain_error_is_shown_in_the_form(client_for, tally_admin):
    response = client_for(tally_admin).post(
        reverse("console:project-create"),
        {"name": "Dup", "labels": "A\nA", "label_mode": "single", "annotations_per_example": 1, "currency": "USD"},
    )
    assert response.status_code == 200
    assert "Label names must be unique within a project." in response.content.decode()
    assert not Project.objects.filter(name="Dup").exists()


# --- the dashboard --------------------------------------------------------------------------------


def test_dashboard_per_role(client_for, project, annotator, auditor, admin_user, other_admin):
    url = reverse("console:dashboard", args=[project.slug])
    assert client_for(admin_user).get(url).status_code == 200
    assert client_for(auditor).get(url).status_code == 200
    assert client_for(annotator).get(url).status_code == 403
    assert client_for(other_admin).get(url).status_code == 404


def test_dashboard_figures_and_alerts(client_for, project, annotator, admin_user):
    add_examples(project, [f"text {i}" for i in range(5)])
    project.annotations_per_example = 2
    project.save()
    project.examples.filter(text="text 0").update(submitted_count=2)
    project.examples.filter(text="text 1").update(submitted_count=1)
    html = client_for(admin_user).get(reverse("console:dashboard", args=[project.slug])).content.decode()
    assert '<dd id="fig-texts">5</dd>' in html
    assert '<dd id="fig-labeled">1</dd>' in html
    assert '<dd id="fig-remaining">7</dd>' in html
    assert 'data-annotator="ann"' in html
    assert "No pay policy is set" in html
    assert "Training is blocked because the first model needs 4 labels" in html
    assert f"{reverse('earnings:project', args=[project.slug])}?annotator=ann" in html
    assert_no_inline_script(html)


def test_login_required_everywhere(project):
    response = Client().get(reverse("console:dashboard", args=[project.slug]))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


# --- members ----------------------------------------------------------------------------------------


def test_members_page_per_role(client_for, project, annotator, auditor, admin_user, other_admin):
    url = reverse("console:members", args=[project.slug])
    html = client_for(admin_user).get(url).content.decode()
    assert 'data-member="ann"' in html and 'data-member="audrey"' in html
    assert_no_inline_script(html)
    assert client_for(auditor).get(url).status_code == 403
    assert client_for(annotator).get(url).status_code == 403
    assert client_for(other_admin).get(url).status_code == 404
    invite = reverse("console:member-invite", args=[project.slug])
    assert client_for(auditor).post(invite, {"role": "admin"}).status_code == 403
    assert client_for(other_admin).post(invite, {"role": "admin"}).status_code == 404
    assert not Invitation.objects.exists()


def test_invite_shows_the_link_once_and_the_invitee_joins(client_for, project, admin_user):
    client = client_for(admin_user)
    response = client.post(reverse("console:member-invite", args=[project.slug]), {"role": "annotator", "note": "Kim"})
    html = response.content.decode()
    link = re.search(r'<p class="secret" id="invitation-url">(http://testserver(/invitations/[^<]+/))</p>', html)
    assert link, html
    assert link.group(2) not in client.get(reverse("console:members", args=[project.slug])).content.decode()
    client.logout()
    page = client.get(link.group(2))
    assert page.status_code == 200 and "Join Reviews" in page.content.decode()
    assert not get_user_model().objects.filter(username="kim").exists()  # GET writes nothing
    joined = client.post(
        link.group(2),
        {"action": "signup", "username": "kim", "password": PASSPHRASE, "password_again": PASSPHRASE},
    )
    assert joined.status_code == 302
    kim = get_user_model().objects.get(username="kim")
    assert Membership.objects.get(project=project, user=kim).role == "annotator"
    assert client.get(link.group(2)).status_code == 404


def test_adding_a_member_answers_the_same_whatever_usernames_exist(client_for, project, admin_user, annotator):
    """The admin never types a username: the form has no such field, so it cannot probe."""
    html = client_for(admin_user).get(reverse("console:members", args=[project.slug])).content.decode()
    form = re.search(r'<form[^>]*id="invite-form".*?</form>', html, flags=re.S).group(0)
    assert 'name="username"' not in form


def test_role_change_and_remove_from_the_page(client_for, project, annotator, admin_user, examples):
    client = client_for(admin_user)
    annotation_services.claim_next(project=project, annotator=annotator)
    client.post(reverse("console:member-role", args=[project.slug, annotator.pk]), {"role": "auditor"})
    assert Membership.objects.get(project=project, user=annotator).role == "auditor"
    assert not Attempt.objects.filter(annotator=annotator, status="claimed").exists()
    response = client.post(reverse("console:member-remove", args=[project.slug, admin_user.pk]), follow=True)
    assert "A project keeps at least one admin" in response.content.decode()
    client.post(reverse("console:member-remove", args=[project.slug, annotator.pk]))
    assert not Membership.objects.filter(project=project, user=annotator).exists()


def test_console_forms_need_their_csrf_token(project, admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    for url, data in (
        (reverse("console:member-invite", args=[project.slug]), {"role": "admin"}),
        (reverse("console:project-create"), {"name": "x", "labels": "a\nb"}),
        (reverse("console:settings-project", args=[project.slug]), {"name": "y", "annotations_per_example": 2}),
        (reverse("console:settings-qc", args=[project.slug]), {"qc_share": "0.3"}),
        (reverse("console:label-add", args=[project.slug]), {"name": "new"}),
        (reverse("console:label-change", args=[project.slug, project.labels.first().pk, "retire"]), {}),
        (reverse("console:accept-do", args=[project.slug]), {"min_confidence": "0.5", "limit": "5", "version": "1"}),
        (reverse("console:accept-undo", args=[project.slug, 1]), {}),
    ):
        assert client.post(url, data).status_code == 403, url
    assert not Invitation.objects.exists()
    project.refresh_from_db()
    assert project.name != "y" and not project.labels.filter(retired=True).exists()
    assert not project.labels.filter(name="new").exists()
