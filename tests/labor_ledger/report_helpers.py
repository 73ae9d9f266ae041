"""A small project whose every labor and pay figure can be worked out by hand, for the Labor Card
and report tests. Work goes through annotation.services (the ledger hooks write the entries);
model versions are registered directly (ModelVersion + ManifestEntry rows), not trained.

The scenario (all on 2030-01-07, UTC; tasks 10 minutes apart, so no time "between tasks"):

    policy   piece 0.01 per accepted text, floor 36.00 per hour worked (= 0.01 per second),
             the client pays 1.00 per accepted text
    t=0      ann (A)   labels text e1 "positive"   10 s   -> a1
    t=600    A         labels e2 "positive"        20 s   -> a2
    t=1200   bea (B)   labels e3 "negative"        40 s   -> a3
    t=1800   A         skips e4                    30 s
    t=2400   v1 snapshot: {a1, a2, a3}
    t=3000   B         labels e1 "negative"        10 s   -> a4 (disagrees with a1)
    t=3300   cy (C)    labels e1 "positive"        10 s   -> a5
    t=3600   admin rejects a3
    t=4200   v2 (parent v1) snapshot: {a1, a2, a4, a5}
    t=4800   v3 (parent v1, a branch) snapshot: {a1, a4}
    next day settlement: A 60 s worked, floor 0.60, pay 0.02 -> top-up 0.58
                         B 50 s worked (a3's rejected time still counts), floor 0.50,
                           pay 0.01 - 0.01 + 0.01 = 0.01 -> top-up 0.49
                         C 10 s, floor 0.10, pay 0.01 -> top-up 0.09
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings

from annotation import services as annotation_services
from annotation.models import Annotation, Attempt, Membership
from labor_ledger import services as ledger_services
from labor_ledger import settlement
from tests.factories import UserFactory, add_examples, add_member, make_project
from training import services as training_services
from training.models import ManifestEntry, ModelVersion, TrainingRun

T0 = datetime(2030, 1, 7, 12, 0, 0, tzinfo=UTC)


def at(seconds: float = 0, *, days: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds, days=days)


def label_text(project, annotator, example, *, start, seconds, label=None, skip=False):
    """Claim exactly `example` (a claim as annotation.services.claim_next makes it, without the
    queue's choice), heartbeat every 5 s for `seconds`, then submit `label` (or skip). Active
    and wall time are both `seconds`."""
    attempt = Attempt.objects.create(
        project=project,
        example=example,
        annotator=annotator,
        claimed_at=start,
        lease_expires_at=start + timedelta(seconds=settings.TALLY_CLAIM_LEASE_SECONDS),
        last_active_at=start,
    )
    annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=start)
    for t in range(5, int(seconds) + 1, 5):
        annotation_services.attempt_heartbeat(
            attempt_id=attempt.pk, annotator=annotator, now=start + timedelta(seconds=t)
        )
    end = start + timedelta(seconds=seconds)
    if skip:
        annotation_services.attempt_skip(attempt_id=attempt.pk, annotator=annotator, now=end)
        return None
    return annotation_services.annotation_submit(
        attempt_id=attempt.pk, annotator=annotator, label_ids=[label.pk], now=end
    )


def make_version(project, *, sequence, annotations, snapshot_at, parent=None, accuracy=None, **fields):
    """Register a model version trained on `annotations` (their labels), as training would."""
    run = TrainingRun.objects.create(project=project, status=TrainingRun.Status.SUCCEEDED)
    metrics = fields.pop("metrics", {})
    if accuracy is not None:
        metrics.setdefault("accuracy", accuracy)
        metrics.setdefault("eval_size", 100)
        metrics.setdefault("eval_source", "holdout")
    version = ModelVersion.objects.create(
        project=project,
        sequence=sequence,
        parent=parent,
        run=run,
        kind=fields.pop("kind", "hashed"),
        loop="fast",
        device=fields.pop("device", "cpu"),
        device_name=fields.pop("device_name", "cpu: x86_64, 2 threads"),
        training_seconds=fields.pop("training_seconds", 30.0),
        embedding_seconds=fields.pop("embedding_seconds", 15.0),
        scoring_seconds=fields.pop("scoring_seconds", 5.0),
        metrics=metrics,
        n_annotations=len(annotations),
        n_examples=len({a.example_id for a in annotations}),
        n_annotators=len({a.annotator_id for a in annotations if a.source == Annotation.Source.HUMAN}),
        manifest_hash=f"{sequence:064x}",
        weights_path=f"test/{sequence}.safetensors",
        weights_sha256="0" * 64,
        snapshot_at=snapshot_at,
        **fields,
    )
    ManifestEntry.objects.bulk_create(
        ManifestEntry(version=version, annotation=a, example_id=a.example_id, label=lab)
        for a in annotations
        for lab in a.labels.all()
    )
    return version


def build_scenario(*, admin=None) -> dict:
    admin = admin or UserFactory(username="ada-admin")
    project = make_project(admin=admin, name="Card", labels=("positive", "negative"), annotations_per_example=3)
    # Versions are built by hand here: a live worker from another test must not train this project.
    training_services.config_update(project=project, enabled=False)
    pos, neg = project.labels.order_by("order", "id")
    e1, e2, e3, e4, _e5 = add_examples(project, [f"text {i}" for i in range(1, 6)])
    a = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="ann", email="ann@example.test"))
    b = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="bea", email="bea@example.test"))
    c = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="cy", email="cy@example.test"))
    auditor = add_member(project, Membership.Role.AUDITOR, UserFactory(username="audrey"))
    ledger_services.pay_policy_create(
        project=project,
        created_by=admin,
        effective_from=at(-3600),
        now=at(-3600),
        piece_rate=Decimal("0.01"),
        floor_hourly_rate=Decimal("36.00"),
        client_price_per_example=Decimal("1.00"),
        pay_rejected_work=False,  # the scenario follows a rejection's reversal through the reports
    )
    a1 = label_text(project, a, e1, start=at(0), seconds=10, label=pos)
    a2 = label_text(project, a, e2, start=at(600), seconds=20, label=pos)
    a3 = label_text(project, b, e3, start=at(1200), seconds=40, label=neg)
    label_text(project, a, e4, start=at(1800), seconds=30, skip=True)
    v1 = make_version(project, sequence=1, annotations=[a1, a2, a3], snapshot_at=at(2400), accuracy=0.60)
    a4 = label_text(project, b, e1, start=at(3000), seconds=10, label=neg)
    a5 = label_text(project, c, e1, start=at(3300), seconds=10, label=pos)
    annotation_services.annotation_review(annotation=a3, status=Annotation.Status.REJECTED, actor=admin, now=at(3600))
    v2 = make_version(project, sequence=2, parent=v1, annotations=[a1, a2, a4, a5], snapshot_at=at(4200), accuracy=0.70)
    v3 = make_version(project, sequence=3, parent=v1, annotations=[a1, a4], snapshot_at=at(4800), accuracy=0.65)
    settlement.settle_due(project=project, now=at(days=1))
    return {
        "project": project,
        "admin": admin,
        "auditor": auditor,
        "A": a,
        "B": b,
        "C": c,
        "labels": (pos, neg),
        "annotations": {"a1": a1, "a2": a2, "a3": a3, "a4": a4, "a5": a5},
        "versions": {1: v1, 2: v2, 3: v3},
    }
