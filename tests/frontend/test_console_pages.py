"""The console's pages per role: admins use them, auditors read, annotators and outsiders are
turned away (403 / 404), nothing changes on GET and every form needs its CSRF token."""

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import Project
from tests.factories import UserFactory, add_examples
from tests.frontend.conftest import assert_no_inline_script, nav_keys

pytestmark = pytest.mark.django_db


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
    assert response.status_code == 302 and response.url == reverse("console:dashboard", args=[project.slug])
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
