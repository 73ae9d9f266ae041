"""Mass assignment: fields a caller may not set (owner, money, project, status, flags,
timestamps, server-measured time) are ignored when sent. Every write API reads its input
through its own input serializer, so an unknown or forbidden field never reaches a model."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from annotation.models import Annotation, Attempt, ImportBatch, Label, Membership
from core.roles import ADMINS_GROUP
from labor_ledger import services as ledger_services
from labor_ledger.models import LedgerEntry, PayPolicy
from tests.factories import UserFactory, add_examples, add_member, make_project
from training.models import ProjectTrainingConfig, TrainingRun

User = get_user_model()
LONG_AGO = "2001-01-01T00:00:00Z"


@pytest.fixture
def other_project(db):
    return make_project(name="Elsewhere")


@pytest.fixture
def stranger(other_project):
    return add_member(other_project, Membership.Role.ADMIN, UserFactory(username="stranger"))


@pytest.fixture
def paid(project, admin_user):
    start = timezone.now() - timedelta(hours=1)
    return ledger_services.pay_policy_create(
        project=project, created_by=admin_user, piece_rate=Decimal("0.10"), effective_from=start, now=start
    )


def test_project_patch_ignores_owner_slug_currency_and_ids(api, project, admin_user, stranger):
    before = {"slug": project.slug, "currency": project.currency, "created_by_id": project.created_by_id}
    response = api(admin_user).patch(
        f"/api/projects/{project.slug}/",
        {
            "name": "Renamed",
            "created_by": stranger.pk,
            "slug": "hijacked",
            "currency": "XAU",
            "id": 999999,
            "label_mode": "multi",
            "created_at": LONG_AGO,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    project.refresh_from_db()
    assert project.name == "Renamed"
    assert {"slug": project.slug, "currency": project.currency, "created_by_id": project.created_by_id} == before
    assert project.label_mode == "single" and project.created_at.year > 2001


def test_project_create_is_owned_by_the_requester(api, stranger):
    creator = UserFactory(username="creator")
    creator.groups.add(Group.objects.get(name=ADMINS_GROUP))
    response = api(creator).post(
        "/api/projects/",
        {"name": "Mine", "labels": ["a", "b"], "created_by": stranger.pk, "id": 424242, "slug": "../admin"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.data["id"] != 424242 and response.data["slug"] == "mine"
    assert Membership.objects.filter(project_id=response.data["id"]).values_list("user", "role")[::1] == [
        (creator.pk, "admin")
    ]


def test_submit_ignores_annotator_project_status_source_example_and_amount(
    api, project, examples, annotator, other_project, stranger, paid
):
    client = api(annotator)
    claim = client.post(f"/api/projects/{project.slug}/queue/next/", {"annotator": stranger.pk}, format="json")
    assert claim.status_code == 200
    attempt = Attempt.objects.get(pk=claim.data["id"])
    assert attempt.annotator == annotator  # the claim is the requester's, whatever the body said
    other_example = add_examples(other_project, ["not yours"])[0]
    label = project.labels.first()
    client.post(f"/api/attempts/{attempt.pk}/heartbeat/", {"active_seconds": "99999", "shown_at": LONG_AGO})
    response = client.post(
        f"/api/attempts/{attempt.pk}/submit/",
        {
            "labels": [label.pk],
            "annotator": stranger.pk,
            "project": other_project.pk,
            "example": other_example.pk,
            "status": "rejected",
            "source": "machine",
            "created_at": LONG_AGO,
            "amount": "1000.00",
            "active_seconds": "99999",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    annotation = Annotation.objects.get(pk=response.data["id"])
    assert (annotation.annotator, annotation.project, annotation.example_id) == (annotator, project, attempt.example_id)
    assert (annotation.status, annotation.source) == ("accepted", "human")
    assert annotation.created_at > timezone.now() - timedelta(minutes=5)
    attempt.refresh_from_db()
    assert attempt.active_seconds < 60 and attempt.shown_at.year > 2001
    pay = LedgerEntry.objects.get(annotation=annotation, kind=LedgerEntry.Kind.PIECE_PAY)
    assert pay.amount == Decimal("0.10") and pay.annotator == annotator


def test_members_post_cannot_raise_site_flags(api, project, admin_user):
    user = UserFactory(username="newcomer")
    add_member(project, "auditor", user)  # the API changes members' roles; people join by invitation
    response = api(admin_user).post(
        f"/api/projects/{project.slug}/members/",
        {"username": "newcomer", "role": "annotator", "is_staff": True, "is_superuser": True, "groups": [1]},
        format="json",
    )
    assert response.status_code == 200, response.content
    user.refresh_from_db()
    assert not user.is_staff and not user.is_superuser and not user.groups.exists()
    bad = api(admin_user).post(
        f"/api/projects/{project.slug}/members/", {"username": "newcomer", "role": "superuser"}, format="json"
    )
    assert bad.status_code == 400


def test_manual_entry_keeps_the_books_own_fields(api, project, admin_user, annotator, stranger, other_project, paid):
    response = api(admin_user).post(
        f"/api/projects/{project.slug}/ledger/manual-entries/",
        {
            "annotator": annotator.username,
            "kind": "bonus",
            "amount": "2.50",
            "reason": "great work",
            "idempotency_key": "bonus-1",
            "currency": "XAU",
            "acting_user": stranger.pk,
            "project": other_project.pk,
            "seq": 1,
            "entry_hash": "0" * 64,
            "prev_hash": "0" * 64,
            "client_amount": "1000",
            "floor_amount": "1000",
            "occurred_at": LONG_AGO,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    entry = LedgerEntry.objects.get(pk=response.data["id"])
    assert (entry.project, entry.currency, entry.acting_user) == (project, project.currency, admin_user)
    assert entry.amount == Decimal("2.50") and entry.client_amount == 0 and entry.floor_amount == 0
    assert entry.entry_hash != "0" * 64 and entry.occurred_at.year > 2001
    # kinds that only the work itself writes cannot be posted
    for kind in ("piece_pay", "hourly_pay", "floor_top_up", "reversal"):
        response = api(admin_user).post(
            f"/api/projects/{project.slug}/ledger/manual-entries/",
            {"annotator": annotator.username, "kind": kind, "amount": "1", "reason": "r", "idempotency_key": kind},
            format="json",
        )
        assert response.status_code == 400, kind


def test_pay_policy_version_project_and_author_are_the_servers(api, project, admin_user, stranger, other_project, paid):
    response = api(admin_user).post(
        f"/api/projects/{project.slug}/pay-policies/",
        {"piece_rate": "0.20", "version": 99, "project": other_project.pk, "created_by": stranger.pk, "id": 5},
        format="json",
    )
    assert response.status_code == 201, response.content
    policy = PayPolicy.objects.get(pk=response.data["id"])
    assert (policy.project, policy.version, policy.created_by) == (project, paid.version + 1, admin_user)
    assert not PayPolicy.objects.filter(project=other_project).exists()


def test_training_run_and_config_ignore_state_fields(api, project, admin_user, stranger, monkeypatch):
    monkeypatch.setattr("training.services._enqueue", lambda run_id: None)
    response = api(admin_user).post(
        f"/api/projects/{project.slug}/training/runs/",
        {"status": "succeeded", "requested_by": stranger.pk, "attempts": 0, "claim_token": "mine", "project": 1},
        format="json",
    )
    assert response.status_code == 201, response.content
    run = TrainingRun.objects.get(pk=response.data["id"])
    assert (run.status, run.requested_by, run.project, run.claim_token) == ("queued", admin_user, project, "")
    response = api(admin_user).patch(
        f"/api/projects/{project.slug}/training/config/",
        {
            "min_labels": 5,
            "current_version": 1,
            "updated_at": "2000-01-01T00:00:00Z",
            "encoder_key": "evil",
            "project": 1,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    config = ProjectTrainingConfig.objects.get(project=project)
    assert config.min_labels == 5
    assert (config.current_version_id, config.encoder_key) == (None, "")
    assert config.updated_at.year != 2000


def test_review_changes_the_status_only(api, project, examples, annotator, admin_user, stranger, paid):
    from tests.support.annotators import work

    _, annotation = work(project, annotator, start=timezone.now() - timedelta(seconds=30))
    response = api(admin_user).post(
        f"/api/projects/{project.slug}/annotations/{annotation.pk}/review/",
        {"status": "rejected", "annotator": stranger.pk, "amount": "-1000", "example": 1, "source": "machine"},
        format="json",
    )
    assert response.status_code == 200, response.content
    annotation.refresh_from_db()
    assert (annotation.status, annotation.annotator, annotation.source) == ("rejected", annotator, "human")
    # the piece pay stays what the policy pays (rejected work stays paid by default): nothing from the body
    assert sum(e.amount for e in LedgerEntry.objects.filter(annotation=annotation)) == paid.piece_rate


def test_import_and_label_ignore_server_fields(api, project, admin_user, stranger, other_project):
    response = api(admin_user).post(
        f"/api/projects/{project.slug}/imports/",
        {
            "file": SimpleUploadedFile("rows.csv", b"text\nhello\n", "text/csv"),
            "created_by": stranger.pk,
            "status": "succeeded",
            "project": other_project.pk,
            "rows_imported": 1000,
        },
        format="multipart",
    )
    assert response.status_code == 202, response.content
    batch = ImportBatch.objects.get(pk=response.data["id"])
    assert (batch.project, batch.created_by, batch.status, batch.rows_imported) == (project, admin_user, "pending", 0)
    response = api(admin_user).post(
        f"/api/projects/{project.slug}/labels/", {"name": "maybe", "project": other_project.pk, "order": 99}
    )
    assert response.status_code == 201
    label = Label.objects.get(pk=response.data["id"])
    assert label.project == project and label.order == 2
