"""A run trains on the project's chosen aggregation and its version records it: the same
labels aggregated by Dawid-Skene give another manifest hash than by majority vote."""

import pytest
from django.utils import timezone

from annotation.models import Membership
from tests.factories import UserFactory, add_member
from tests.support.annotators import label_next
from training import pipeline, selectors, services
from training.models import ManifestEntry, ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    def enqueue(run_id):
        TrainingRun.objects.filter(pk=run_id).update(enqueued_at=timezone.now())

    monkeypatch.setattr(services, "_enqueue", enqueue)


def test_versions_differing_only_in_aggregation_are_told_apart(toy_project, labeler, toy, admin_user):
    toy_project.annotations_per_example = 2
    toy_project.save(update_fields=["annotations_per_example"])
    services.config_update(project=toy_project, enabled=False)
    second = add_member(toy_project, Membership.Role.ANNOTATOR, UserFactory(username="second"))
    label_next(toy_project, labeler, toy, n=16)
    label_next(toy_project, second, lambda text: ["positive"], n=16)
    versions = {}
    for aggregation in ("majority", "dawid_skene"):
        services.config_update(project=toy_project, aggregation=aggregation)
        run = services.training_run_request(project=toy_project, requested_by=admin_user)
        versions[aggregation] = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=run.pk))
    majority, ds = versions["majority"], versions["dawid_skene"]
    assert (majority.aggregation, ds.aggregation) == ("majority", "dawid_skene")
    assert ds.metrics["aggregation"] == "dawid_skene"
    entries = set(ManifestEntry.objects.filter(version=ds).values_list("annotation_id", "example_id", "label_id"))
    assert entries == set(
        ManifestEntry.objects.filter(version=majority).values_list("annotation_id", "example_id", "label_id")
    )
    assert majority.manifest_hash == selectors.manifest_hash(entries)
    assert ds.manifest_hash == selectors.manifest_hash(entries, "dawid_skene") != majority.manifest_hash
