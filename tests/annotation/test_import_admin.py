"""The Django admin: every annotation model is registered, and a project's admins import through it."""

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation import tasks
from annotation.imports import runs
from annotation.models import Example, ImportBatch, Membership
from tests.factories import UserFactory, add_examples, add_member, make_project


@pytest.fixture(autouse=True)
def media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def queued(monkeypatch):
    ids = []

    def delay(batch_id):
        ids.append(batch_id)
        runs.import_batch_run(batch_id=batch_id)

    monkeypatch.setattr(tasks.import_batch_task, "delay", delay)
    return ids


def staff(user, *codenames):
    user.is_staff = True
    user.save()
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="annotation", codename__in=codenames))
    return user


@pytest.mark.parametrize("model", ["project", "label", "membership", "importbatch", "example", "attempt", "annotation"])
def test_every_annotation_model_has_a_working_changelist(client, superuser, project, examples, model):
    client.force_login(superuser)

    response = client.get(reverse(f"admin:annotation_{model}_changelist"))

    assert response.status_code == 200


def test_project_page_links_to_the_import_page(client, superuser, project):
    client.force_login(superuser)

    page = client.get(reverse("admin:annotation_project_change", args=[project.pk])).content.decode()

    assert reverse("admin:annotation_project_import", kwargs={"project_id": project.pk}) in page


def test_admin_upload_queues_an_import_and_shows_its_batch(
    client, superuser, project, queued, django_capture_on_commit_callbacks
):
    client.force_login(superuser)
    url = reverse("admin:annotation_project_import", kwargs={"project_id": project.pk})
    assert b"Upload and import" in client.get(url).content
    upload = SimpleUploadedFile("r.csv", b"text,label\nNice,positive\n,negative\nMean,negative\n")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url, {"file": upload, "text_column": "text", "label_column": "label", "encoding": "utf-8"}
        )

    batch = ImportBatch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:annotation_importbatch_change", args=[batch.pk])
    assert queued == [batch.pk]
    batch.refresh_from_db()
    assert (batch.status, batch.rows_imported, batch.rows_skipped) == (ImportBatch.Status.SUCCEEDED, 2, 1)
    assert batch.created_by == superuser
    page = client.get(response["Location"]).content.decode()
    assert "empty_text" in page and "the text is empty" in page


def test_admin_upload_shows_option_errors_on_the_form(client, superuser, project, queued):
    client.force_login(superuser)
    url = reverse("admin:annotation_project_import", kwargs={"project_id": project.pk})
    upload = SimpleUploadedFile("r.csv", b"body\nNice\n")

    response = client.post(url, {"file": upload, "text_column": "text", "encoding": "utf-8"})

    assert response.status_code == 200
    assert "&#x27;body&#x27;" in response.content.decode()
    assert ImportBatch.objects.count() == 0


def test_the_import_action_opens_the_import_page_for_one_project(client, superuser, project):
    client.force_login(superuser)

    response = client.post(
        reverse("admin:annotation_project_changelist"), {"action": "import_examples", "_selected_action": [project.pk]}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:annotation_project_import", kwargs={"project_id": project.pk})


def test_staff_see_only_their_projects_and_import_only_where_they_are_admins(
    client, project, admin_user, queued, django_capture_on_commit_callbacks
):
    other = make_project(admin=UserFactory(), name="Secret project")
    add_examples(other, ["secret text"])
    auditor = staff(add_member(project, Membership.Role.AUDITOR))  # membership only, no model permissions
    client.force_login(auditor)

    projects = client.get(reverse("admin:annotation_project_changelist")).content.decode()
    examples = client.get(reverse("admin:annotation_example_changelist")).content.decode()
    import_page = client.get(reverse("admin:annotation_project_import", kwargs={"project_id": project.pk}))
    other_page = client.get(reverse("admin:annotation_project_import", kwargs={"project_id": other.pk}))

    assert project.name in projects and "Secret project" not in projects
    assert "secret text" not in examples
    assert import_page.status_code == 403  # an auditor changes nothing
    assert other_page.status_code == 404  # and does not learn other projects exist

    staff(admin_user)
    client.force_login(admin_user)
    url = reverse("admin:annotation_project_import", kwargs={"project_id": project.pk})
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url, {"file": SimpleUploadedFile("a.csv", b"text\nhi\n"), "text_column": "text", "encoding": "utf-8"}
        )
    assert client.get(response["Location"]).status_code == 200  # the batch's page
    assert client.get(reverse("admin:annotation_project_import", kwargs={"project_id": other.pk})).status_code == 404


def test_the_records_of_work_are_read_only_in_the_admin(client, superuser, project, examples):
    client.force_login(superuser)

    page = client.get(reverse("admin:annotation_example_change", args=[examples[0].pk]))

    assert page.status_code == 200
    assert b'name="text"' not in page.content  # shown, not editable
    delete_url = reverse("admin:annotation_example_delete", args=[examples[0].pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert Example.objects.filter(pk=examples[0].pk).exists()
