"""An upload through the API, imported by a real Celery worker into the real PostgreSQL, with
progress through the real Redis: the path a user's upload takes."""

import csv
import io
import itertools
from collections import Counter

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Example, ImportBatch
from tests.annotation.import_helpers import AG_NEWS_LABELS, AG_NEWS_MAP, datasets_dir
from tests.factories import UserFactory, make_project
from tests.support.waiting import wait_for

ROWS = 400


@pytest.mark.integration
def test_api_upload_of_ag_news_is_imported_by_the_worker(celery_worker, api):
    source = datasets_dir() / "ag_news_test.csv"
    with source.open("rb") as f:
        content = b"".join(itertools.islice(f, ROWS))  # AG News has no newline inside a record
    expected = Counter(AG_NEWS_LABELS[int(row[0]) - 1] for row in csv.reader(io.StringIO(content.decode())))
    admin = UserFactory(username="importer-admin")
    project = make_project(admin=admin, name="AG News", labels=AG_NEWS_LABELS)
    client = api(admin)

    response = client.post(
        reverse("annotation:import-list", kwargs={"slug": project.slug}),
        {
            "file": SimpleUploadedFile("ag_news_head.csv", content),
            "no_header": "true",
            "text_column": "2,3",
            "label_column": "1",
            "label_map": AG_NEWS_MAP,
            "unescape_backslashes": "true",
        },
        format="multipart",
        HTTP_IDEMPOTENCY_KEY="ag-news-head",
    )
    assert response.status_code == 202, response.data

    seen = set()

    def finished():
        status = client.get(response["Location"]).data
        seen.add(status["status"])
        return status if status["status"] in (ImportBatch.Status.SUCCEEDED, ImportBatch.Status.FAILED) else None

    status = wait_for(finished, timeout=90, what="the import to finish")

    assert status["status"] == ImportBatch.Status.SUCCEEDED, status["error"]
    assert status["rows_read"] == ROWS
    assert status["rows_imported"] + status["rows_duplicate"] + status["rows_skipped"] == ROWS
    assert status["rows_skipped"] == 0 and status["progress"] is None
    assert Example.objects.filter(project=project).count() == status["rows_imported"] > 0.9 * ROWS
    gold = Counter(Example.objects.filter(project=project).values_list("gold_label__name", flat=True))
    duplicates = status["rows_duplicate"]
    assert sum(gold.values()) == ROWS - duplicates
    assert all(expected[name] - duplicates <= gold[name] <= expected[name] for name in AG_NEWS_LABELS)
    assert not Example.objects.filter(project=project, text__contains="\\").exists()  # escapes decoded
    # A retry of the same upload (same Idempotency-Key) is the same batch, not a second import.
    retry = client.post(
        reverse("annotation:import-list", kwargs={"slug": project.slug}),
        {"file": SimpleUploadedFile("ag_news_head.csv", content), "no_header": "true", "text_column": "2,3"},
        format="multipart",
        HTTP_IDEMPOTENCY_KEY="ag-news-head",
    )
    assert (retry.status_code, retry.data["id"]) == (200, status["id"])
    assert ImportBatch.objects.filter(project=project).count() == 1
