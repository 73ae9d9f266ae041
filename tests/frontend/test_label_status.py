"""The labeling page's small JSON (issue 14, item 7; issue 12, item 6): today's own figures and
a compact training status, never anyone else's figures and no metric that could reveal gold."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation import services as annotation_services
from annotation.models import Membership
from labor_ledger import services
from tests.factories import UserFactory, add_member, make_project
from tests.labor_ledger.report_helpers import make_version
from training.models import ProjectTrainingConfig, TrainingRun

pytestmark = pytest.mark.django_db


def status_of(client, project):
    answer = client.get(reverse("frontend:label-status", args=[project.slug]))
    assert answer.status_code == 200, answer.content
    assert "no-store" in answer["Cache-Control"] or "max-age=0" in answer["Cache-Control"]
    return answer.json()


def label_one(project, user, *, start, seconds):
    attempt = annotation_services.claim_next(project=project, annotator=user, now=start)
    for t in range(0, seconds + 1, 5):
        annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=user, now=start + timedelta(seconds=t))
    annotation_services.annotation_submit(
        attempt_id=attempt.pk,
        annotator=user,
        label_ids=[project.labels.first().pk],
        now=start + timedelta(seconds=seconds),
    )


def test_today_counts_only_my_own_work(client_for, project, examples, annotator, admin_user):
    now = timezone.now()
    earlier = now - timedelta(minutes=10)
    services.pay_policy_create(
        project=project, created_by=admin_user, piece_rate=Decimal("0.25"), effective_from=earlier, now=earlier
    )
    other = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="other-ann"))
    label_one(project, annotator, start=now - timedelta(minutes=3), seconds=20)
    label_one(project, other, start=now - timedelta(minutes=2), seconds=40)
    label_one(project, other, start=now - timedelta(minutes=1), seconds=40)
    mine = status_of(client_for(annotator), project)["today"]
    assert (mine["texts"], mine["earned"], mine["time"], mine["seconds"]) == (1, "0.25", "0:20", 20.0)
    assert mine["currency"] == project.currency
    theirs = status_of(client_for(other), project)["today"]
    assert (theirs["texts"], theirs["earned"], theirs["time"]) == (2, "0.50", "1:20")
    # a query parameter naming someone else changes nothing
    url = reverse("frontend:label-status", args=[project.slug])
    answer = client_for(annotator).get(url, {"annotator": "other-ann"})
    assert answer.json()["today"]["texts"] == 1


def test_open_work_counts_as_it_is_credited(client_for, project, examples, annotator):
    now = timezone.now()
    attempt = annotation_services.claim_next(project=project, annotator=annotator, now=now - timedelta(seconds=10))
    for t in (10, 5, 0):
        beat = now - timedelta(seconds=t)
        annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=beat)
    assert status_of(client_for(annotator), project)["today"]["time"] == "0:10"


def test_training_status_is_compact_and_carries_no_metric(client_for, project, examples, annotator):
    assert status_of(client_for(annotator), project)["training"] == {"version": None, "run": None, "stage": ""}
    version = make_version(project, sequence=1, annotations=[], snapshot_at=timezone.now(), accuracy=0.93)
    ProjectTrainingConfig.objects.update_or_create(project=project, defaults={"current_version": version})
    TrainingRun.objects.create(project=project, status=TrainingRun.Status.RUNNING, stage="embedding")
    body = status_of(client_for(annotator), project)
    assert body["training"] == {"version": 1, "run": "running", "stage": "embedding"}
    assert "0.93" not in str(body) and "accuracy" not in str(body)


def test_who_may_ask(client_for, project, auditor, admin_user):
    url = reverse("frontend:label-status", args=[project.slug])
    assert client_for(auditor).get(url).status_code == 403
    outsider = UserFactory(username="outsider")
    make_project(admin=outsider, name="Elsewhere")
    assert client_for(outsider).get(url).status_code == 404
    assert client_for(admin_user).get(url).status_code == 200
