"""REST API of imports: who may upload and read, idempotent retries, errors, live progress."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation import tasks
from annotation.imports import formats, jobs, runs
from annotation.models import Example, ImportBatch, Membership
from tests.factories import UserFactory, add_member, make_project


@pytest.fixture(autouse=True)
def media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def queued(monkeypatch):
    """The batch ids handed to Celery; the import itself runs here, synchronously."""
    ids = []

    def delay(batch_id):
        ids.append(batch_id)
        runs.import_batch_run(batch_id=batch_id)

    monkeypatch.setattr(tasks.import_batch_task, "delay", delay)
    return ids


def upload_url(project):
    return reverse("annotation:import-list", kwargs={"slug": project.slug})


def csv_file(content: bytes = b"text,label\nGreat film,positive\nAwful film,negative\n", name="reviews.csv"):
    return SimpleUploadedFile(name, content, content_type="text/csv")


def test_admin_uploads_a_file_and_the_batch_imports_after_commit(
    project, admin_user, api, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api(admin_user).post(
            upload_url(project), {"file": csv_file(), "label_column": "label"}, format="multipart"
        )

    assert response.status_code == 202, response.data
    batch_id = response.data["id"]
    assert response.data["status"] == ImportBatch.Status.PENDING  # the worker had not run yet
    detail_url = reverse("annotation:import-detail", kwargs={"slug": project.slug, "batch_id": batch_id})
    assert response["Location"] == detail_url
    assert queued == [batch_id]
    detail = api(admin_user).get(response["Location"]).data
    assert detail["status"] == ImportBatch.Status.SUCCEEDED
    assert (detail["rows_read"], detail["rows_imported"]) == (2, 2)
    assert detail["created_by"] == admin_user.username and detail["report"] == []
    assert sorted(Example.objects.values_list("gold_label__name", flat=True)) == ["negative", "positive"]


def test_nothing_is_queued_when_the_request_rolls_back(project, admin_user, api, queued):
    # Without a commit (the test's transaction) the on_commit hook never fires.
    response = api(admin_user).post(upload_url(project), {"file": csv_file()}, format="multipart")

    assert response.status_code == 202
    assert queued == []


@pytest.mark.parametrize("role", [Membership.Role.ANNOTATOR, Membership.Role.AUDITOR])
def test_annotators_and_auditors_cannot_upload(project, api, role):
    user = add_member(project, role)

    response = api(user).post(upload_url(project), {"file": csv_file()}, format="multipart")

    assert response.status_code == 403
    assert ImportBatch.objects.count() == 0


def test_non_members_do_not_learn_the_project_exists(project, api):
    stranger = UserFactory()

    assert api(stranger).post(upload_url(project), {"file": csv_file()}, format="multipart").status_code == 404
    assert api(stranger).get(upload_url(project)).status_code == 404
    assert api().get(upload_url(project)).status_code in (401, 403)


def test_auditors_read_batches_annotators_do_not(
    project, admin_user, auditor, annotator, api, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        batch_id = api(admin_user).post(upload_url(project), {"file": csv_file()}, format="multipart").data["id"]
    detail = reverse("annotation:import-detail", kwargs={"slug": project.slug, "batch_id": batch_id})

    listed = api(auditor).get(upload_url(project))
    assert listed.status_code == 200 and [b["id"] for b in listed.data["results"]] == [batch_id]
    assert api(auditor).get(detail).data["status"] == ImportBatch.Status.SUCCEEDED
    assert api(annotator).get(detail).status_code == 403
    assert api(annotator).get(upload_url(project)).status_code == 403


def test_a_batch_of_another_project_is_not_found(project, admin_user, api):
    other = make_project(admin=UserFactory(), name="Other")
    options = formats.import_options(source_name="a.csv")
    foreign, _ = jobs.import_batch_create(project=other, created_by=None, source_name="a.csv", options=options)

    url = reverse("annotation:import-detail", kwargs={"slug": project.slug, "batch_id": foreign.pk})
    assert api(admin_user).get(url).status_code == 404


def test_a_retried_upload_with_the_same_idempotency_key_makes_one_batch(
    project, admin_user, api, queued, django_capture_on_commit_callbacks
):
    client = api(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(upload_url(project), {"file": csv_file()}, format="multipart", HTTP_IDEMPOTENCY_KEY="k-1")
    with django_capture_on_commit_callbacks(execute=True):
        retry = client.post(upload_url(project), {"file": csv_file()}, format="multipart", HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status_code, retry.status_code) == (202, 200)
    assert retry.data["id"] == first.data["id"]
    assert retry.data["status"] == ImportBatch.Status.SUCCEEDED
    assert ImportBatch.objects.count() == 1 and queued == [first.data["id"]]
    assert Example.objects.count() == 2


def test_an_idempotency_key_reused_for_another_file_is_a_conflict(project, admin_user, api, queued):
    client = api(admin_user)
    client.post(upload_url(project), {"file": csv_file()}, format="multipart", HTTP_IDEMPOTENCY_KEY="k-2")

    response = client.post(
        upload_url(project), {"file": csv_file(name="other.csv")}, format="multipart", HTTP_IDEMPOTENCY_KEY="k-2"
    )

    assert response.status_code == 409
    assert response.data["code"] == "key_reused"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"text_column": "body"}, "'text', 'label'"),
        ({"no_header": "true"}, "by position"),
        ({"file_format": "xml"}, "valid choice"),
    ],
)
def test_bad_options_are_refused_before_anything_is_stored(project, admin_user, api, queued, data, message):
    response = api(admin_user).post(upload_url(project), {"file": csv_file(), **data}, format="multipart")

    assert response.status_code == 400
    assert message in str(response.data)
    assert ImportBatch.objects.count() == 0


def test_a_file_over_the_upload_limit_is_refused(project, admin_user, api, settings):
    settings.TALLY_MAX_UPLOAD_BYTES = 10

    response = api(admin_user).post(upload_url(project), {"file": csv_file()}, format="multipart")

    # refused from its Content-Length before it is read (core/middleware.py; the view's own
    # check, file_too_large, stays behind it for a body that declared no length)
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"


def test_headerless_upload_with_positions(project, admin_user, api, queued, django_capture_on_commit_callbacks):
    content = b'"1","Great","film"\n"2","Awful","film"\n'
    with django_capture_on_commit_callbacks(execute=True):
        response = api(admin_user).post(
            upload_url(project),
            {
                "file": csv_file(content, "plain.csv"),
                "no_header": "true",
                "text_column": "2,3",
                "label_column": "1",
                "label_map": "1=positive,2=negative",
            },
            format="multipart",
        )

    assert response.status_code == 202, response.data
    assert list(Example.objects.order_by("id").values_list("text", "gold_label__name")) == [
        ("Great film", "positive"),
        ("Awful film", "negative"),
    ]


def test_status_merges_live_progress_from_the_cache_while_running(project, admin_user, api, settings):
    settings.TALLY_IMPORT_CHUNK_ROWS = 50
    options = formats.import_options(source_name="big.csv")
    batch, _ = jobs.import_batch_create(project=project, created_by=admin_user, source_name="big.csv", options=options)
    url = reverse("annotation:import-detail", kwargs={"slug": project.slug, "batch_id": batch.pk})
    content = b"text\n" + b"".join(f"text {i}\n".encode() for i in range(300))
    seen = []

    def poll(progress):
        if progress.status == ImportBatch.Status.RUNNING and progress.rows_read:
            seen.append(api(admin_user).get(url).data)

    runs.import_run(batch=batch, stream=io.BytesIO(content), bytes_total=len(content), on_progress=poll)

    assert seen, "the status endpoint was never polled during the import"
    during = seen[-1]
    assert during["status"] == ImportBatch.Status.RUNNING
    assert during["rows_read"] == 0  # the row's counts are written at the end...
    assert during["progress"]["rows_read"] >= 250  # ...the cache has the live ones
    assert during["progress"]["bytes_total"] == len(content) and 0 < during["progress"]["fraction"] <= 1
    after = api(admin_user).get(url).data
    assert after["status"] == ImportBatch.Status.SUCCEEDED and after["progress"] is None
    assert after["rows_read"] == 300
