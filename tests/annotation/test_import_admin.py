"""The Django admin, for superusers only: every annotation model is registered, a superuser
imports through it, staff project admins are turned away (they use the console, whose import
page tests/frontend/test_console_ledger_pay_import.py covers), and what the labels and the
ledger depend on is read-only."""

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation import services, tasks
from annotation.imports import runs
from annotation.models import Example, ImportBatch
from labor_ledger.models import LedgerEntry
from tests.factories import UserFactory


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


def test_the_admin_is_for_superusers_only_project_admins_use_the_console(client, project, admin_user, auditor):
    """Staff who admin or audit a project (and staff with model permissions) get the admin's
    login page, never its pages; the console is where they work."""
    staff(admin_user, "view_project", "change_project", "add_project")
    staff(auditor)
    for user in (admin_user, auditor):
        client.force_login(user)
        for url in (
            reverse("admin:index"),
            reverse("admin:annotation_project_changelist"),
            reverse("admin:annotation_project_change", args=[project.pk]),
            reverse("admin:annotation_project_import", kwargs={"project_id": project.pk}),
            reverse("admin:annotation_example_changelist"),
        ):
            response = client.get(url)
            assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login")), url
    client.force_login(admin_user)
    assert client.get(reverse("console:import", args=[project.slug])).status_code == 200


def test_what_the_labels_and_the_ledger_depend_on_is_read_only(client, superuser, project, annotator, examples):
    client.force_login(superuser)
    url = reverse("admin:annotation_project_change", args=[project.pk])
    page = client.get(url).content.decode()
    for name in ("slug", "currency", "label_mode"):
        assert f'name="{name}"' in page  # nothing labeled, no ledger entry yet: all may change
    attempt = services.claim_next(project=project, annotator=annotator)
    services.annotation_submit(attempt_id=attempt.pk, annotator=annotator, label_ids=[project.labels.first().pk])
    assert LedgerEntry.objects.filter(project=project).exists()
    page = client.get(url).content.decode()
    for name in ("slug", "currency", "label_mode"):
        assert f'name="{name}"' not in page, name
    assert 'name="labels-0-DELETE"' not in page  # labels are retired in the console, never deleted


def test_the_records_of_work_are_read_only_in_the_admin(client, superuser, project, examples):
    client.force_login(superuser)

    page = client.get(reverse("admin:annotation_example_change", args=[examples[0].pk]))

    assert page.status_code == 200
    assert b'name="text"' not in page.content  # shown, not editable
    delete_url = reverse("admin:annotation_example_delete", args=[examples[0].pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert Example.objects.filter(pk=examples[0].pk).exists()
