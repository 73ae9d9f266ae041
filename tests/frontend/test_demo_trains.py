"""`make demo` trains: the seeded project, labeled through the HTTP API as a newcomer would,
gets a model version from the real worker (issue 12, item 5). Every demo text carries a gold
label; the project must still keep enough of them to train on."""

import csv
import io
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from annotation.management.commands import seed_demo
from annotation.models import Label, Project
from training.models import ModelVersion, TrainingRun

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def demo_truth() -> dict[str, str]:
    with open(Path(settings.BASE_DIR) / seed_demo.FIXTURE, newline="", encoding="utf-8") as f:
        return {row["text"]: row["label"] for row in csv.DictReader(f)}


def test_the_demo_project_trains_from_its_first_labels(celery_worker, api):
    call_command("seed_demo", stdout=io.StringIO())
    project = Project.objects.get(slug=seed_demo.PROJECT_SLUG)
    assert project.examples.filter(gold_label__isnull=False).count() == project.examples.count() > 0
    client = api(get_user_model().objects.get(username="annotator1"))
    truth = demo_truth()
    labels = dict(Label.objects.filter(project=project).values_list("name", "id"))
    queue_url = reverse("annotation:queue-next", kwargs={"slug": project.slug})
    # when: a newcomer labels 24 texts, answering as the gold labels say
    for _ in range(24):
        claim = client.post(queue_url, {}, format="json")
        assert claim.status_code == 200, claim.content
        attempt = claim.data
        submit = client.post(
            reverse("annotation:attempt-submit", kwargs={"attempt_id": attempt["id"]}),
            {"labels": [labels[truth[attempt["example"]["text"]]]], "idempotency_key": f"demo-{attempt['id']}"},
            format="json",
        )
        assert submit.status_code == 201, submit.content
    # then: the worker registers a version (the first run embeds the demo pool with MiniLM)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not ModelVersion.objects.filter(project=project).exists():
        time.sleep(0.5)
    failed = list(TrainingRun.objects.filter(project=project, status="failed").values_list("error", flat=True))
    version = ModelVersion.objects.filter(project=project).order_by("sequence").first()
    assert version is not None, f"no model version; failed runs: {failed[:3]}"
    assert version.n_examples > 0 and version.metrics["eval_source"] == "gold"
