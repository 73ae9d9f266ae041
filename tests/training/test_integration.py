"""The loop on the real stack: PostgreSQL, Redis and a Celery worker subprocess.

300 AG News texts are imported, an annotator labels through the REST API, and the worker
retrains as labels arrive: versions appear, the queue reorders, and every version's manifest
equals the accepted labels of the moment its run read them."""

import pytest
from django.urls import reverse

from annotation.models import Annotation, Example, Membership
from tests.factories import UserFactory, add_member, make_project
from tests.support.annotators import label_through_api
from tests.support.waiting import wait_for
from training import selectors, services
from training.ml.data import AG_NEWS_CLASSES, datasets_dir, read_ag_news
from training.models import ManifestEntry, ModelVersion, TrainingRun

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# How long the worker may take for a step of this test; it has no one else's work to do first.
WORKER_TIMEOUT_S = 90


def idle(project):
    return not TrainingRun.objects.filter(project=project, status__in=["queued", "running"]).exists()


@pytest.fixture
def ag_project(transactional_db):
    path = datasets_dir() / "ag_news_test.csv"
    if not path.exists():
        pytest.skip(f"AG News not found at {path}; set TALLY_DATASETS_DIR")
    admin = UserFactory(username="ada")
    project = make_project(admin=admin, name="AG News", labels=AG_NEWS_CLASSES)
    rows = read_ag_news(path, limit=300)
    from annotation.services import text_hash

    Example.objects.bulk_create(Example(project=project, text=t, text_hash=text_hash(t)) for _, t in rows)
    services.config_update(project=project, model_kind="hashed", min_labels=8, holdout_share=0.2)
    truth = {t: lab for lab, t in rows}
    return project, admin, truth


def test_versions_appear_the_queue_reorders_and_manifests_hold(celery_worker, ag_project, api):
    project, admin, truth = ag_project
    annotator = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="ann-int"))
    client = api(annotator)

    # before any model (fewer labels than min_labels=8, so no run can exist yet): oldest first
    before_model = label_through_api(client, project, truth, 7)
    assert before_model == sorted(before_model)
    assert not ModelVersion.objects.filter(project=project).exists()
    # a version may now arrive at any moment and reorder what follows
    label_through_api(client, project, truth, 23)

    # the worker trains a first version from the labels (debounced: far fewer runs than labels)
    v1 = wait_for(
        lambda: selectors.current_version(project=project), timeout=WORKER_TIMEOUT_S, what="a first model version"
    )
    assert TrainingRun.objects.filter(project=project).count() < 30

    # the queue now follows the model: priorities set, and what is offered is what the
    # priorities say (highest first), no longer the id order
    wait_for(lambda: idle(project), timeout=WORKER_TIMEOUT_S, what="the training queue to drain")
    assert Example.objects.filter(project=project, priority__gt=0).count() > 200
    second_batch = label_through_api(client, project, truth, 30)
    assert second_batch != sorted(second_batch)

    # more labels make a newer version current, parented by an older one
    wait_for(
        lambda: idle(project) and selectors.current_version(project=project).n_annotations > v1.n_annotations,
        timeout=WORKER_TIMEOUT_S,
        what="a newer current version",
    )
    versions = list(ModelVersion.objects.filter(project=project).order_by("sequence"))
    assert len(versions) >= 2
    assert [v.sequence for v in versions] == list(range(1, len(versions) + 1))
    current = selectors.current_version(project=project)
    assert current == max(versions, key=lambda v: v.run_id)
    assert current.parent is not None
    assert all(r.status == "succeeded" for r in TrainingRun.objects.filter(project=project))

    # every version's manifest is exactly the accepted labels when its run read them, minus held-out
    # ones. The annotator submits one label at a time, so at most one (the newest created before
    # the read) can have been in flight, created but not yet committed, when the run read them.
    holdout = services.config_get(project_id=project.pk).holdout_share
    for version in versions:
        before = (
            Annotation.objects.filter(project=project, status="accepted", created_at__lte=version.snapshot_at)
            .select_related("example")
            .order_by("created_at", "id")
        )
        expected = [
            (a.pk, a.example_id, a.labels.get().pk)
            for a in before
            if not selectors.in_holdout(a.example.text_hash, holdout)
        ]
        got = set(ManifestEntry.objects.filter(version=version).values_list("annotation_id", "example_id", "label_id"))
        newest_before = before.last().pk
        in_flight = {e for e in expected if e[0] == newest_before}
        assert got in (set(expected), set(expected) - in_flight), f"manifest of v{version.sequence}"
        assert version.manifest_hash == selectors.manifest_hash(got)
        assert version.n_annotations == len(got)

    # all 60 labels are there: nothing of the annotator's work was lost
    assert Annotation.objects.filter(project=project, annotator=annotator, status="accepted").count() == 60

    # an explanation, computed by the worker on the default queue, served by the API
    example_id = second_batch[0]
    explanation_url = reverse("training:explanation", kwargs={"slug": project.slug, "example_id": example_id})
    admin_client = api(admin)
    response = wait_for(
        lambda: (r := admin_client.get(explanation_url)).status_code == 200 and r,
        timeout=WORKER_TIMEOUT_S,
        what="an explanation",
    )
    assert response.data["tokens"] and response.data["version"] == current.sequence
