"""The Settings page (name, instructions, overlap, labels added / renamed / retired, QC share)
and Bulk accept (preview with the accuracy at the threshold, accept, undo), per role."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation import services as annotation_services
from annotation.models import Annotation, Example, Label
from core.errors import Conflict, NotFound, ValidationFailed
from labor_ledger.models import LedgerEntry
from tests.factories import add_examples
from tests.labor_ledger.report_helpers import make_version
from tests.support.pages import assert_no_inline_script
from training import selectors as training_selectors
from training import services as training_services
from training.models import AcceptBatch, Prediction, ProjectTrainingConfig

pytestmark = pytest.mark.django_db


# --- settings ---------------------------------------------------------------------------------------


def test_settings_page_per_role(client_for, project, admin_user, auditor, annotator, other_admin):
    url = reverse("console:settings", args=[project.slug])
    html = client_for(admin_user).get(url).content.decode()
    for form in ("project-settings-form", "label-add-form", "qc-form"):
        assert f'id="{form}"' in html
    assert 'data-preview-of="id_instructions"' in html and 'data-nav="settings"' in html
    assert_no_inline_script(html)
    html = client_for(auditor).get(url).content.decode()
    assert 'id="project-settings-form"' not in html and "Retire" not in html and 'id="qc-now"' in html
    assert client_for(annotator).get(url).status_code == 403
    assert client_for(other_admin).get(url).status_code == 404
    for name in ("settings-project", "settings-qc", "label-add"):
        assert client_for(admin_user).get(reverse(f"console:{name}", args=[project.slug])).status_code == 405
        assert client_for(auditor).post(reverse(f"console:{name}", args=[project.slug]), {}).status_code == 403


def test_settings_change_name_instructions_overlap_and_qc_share(client_for, project, admin_user):
    client = client_for(admin_user)
    response = client.post(
        reverse("console:settings-project", args=[project.slug]),
        {"name": " Reviews ", "instructions": "Read it.\n\nThen label.", "annotations_per_example": 3},
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.name, project.instructions, project.annotations_per_example) == (
        "Reviews",
        "Read it.\n\nThen label.",
        3,
    )
    bad = client.post(
        reverse("console:settings-project", args=[project.slug]), {"name": "x", "annotations_per_example": 9}
    )
    assert bad.status_code == 400 and "Ensure this value is less than or equal to 5" in bad.content.decode()
    client.post(reverse("console:settings-qc", args=[project.slug]), {"qc_share": "0.25"})
    assert training_selectors.training_config(project=project).qc_share == 0.25
    page = client.get(reverse("console:settings", args=[project.slug])).content.decode()
    assert 'id="qc-now">0.25<' in page and 'id="overlap-now">3<' in page
    assert client.post(reverse("console:settings-qc", args=[project.slug]), {"qc_share": "0.9"}).status_code == 400


def test_labels_are_added_renamed_and_retired_never_deleted(client_for, project, admin_user, annotator):
    client = client_for(admin_user)
    pos = project.labels.get(name="positive")
    examples = add_examples(project, ["great film", "dull film"])
    attempt = annotation_services.claim_next(project=project, annotator=annotator)
    labeled = annotation_services.annotation_submit(attempt_id=attempt.pk, annotator=annotator, label_ids=[pos.pk])
    settings = reverse("console:settings", args=[project.slug])
    change = lambda label, action: reverse("console:label-change", args=[project.slug, label.pk, action])  # noqa: E731

    client.post(reverse("console:label-add", args=[project.slug]), {"name": "mixed"})
    mixed = project.labels.get(name="mixed")
    assert client.post(reverse("console:label-add", args=[project.slug]), {"name": "mixed"}).status_code == 400
    client.post(change(pos, "rename"), {"name": "good"})
    pos.refresh_from_db()
    assert pos.name == "good" and list(labeled.labels.values_list("name", flat=True)) == ["good"]
    page = client.post(change(pos, "retire"), follow=True).content.decode()
    assert "retired: not offered for new labels" in page
    pos.refresh_from_db()
    assert pos.retired and Label.objects.filter(pk=pos.pk).exists()
    # the labels already given keep it; it is not offered for new ones
    labeled.refresh_from_db()
    assert labeled.status == Annotation.Status.ACCEPTED and list(labeled.labels.all()) == [pos]
    label_page = client_for(annotator).get(reverse("frontend:label", args=[project.slug])).content.decode()
    client = client_for(admin_user)
    assert ">good<" not in label_page and ">mixed<" in label_page
    other = annotation_services.claim_next(project=project, annotator=annotator)
    with pytest.raises(ValidationFailed, match="retired"):
        annotation_services.annotation_submit(attempt_id=other.pk, annotator=annotator, label_ids=[pos.pk])
    # a project keeps one label to offer; a retired one can be offered again
    neg = project.labels.get(name="negative")
    client.post(change(neg, "retire"))
    page = client.post(change(mixed, "retire"), follow=True).content.decode()
    assert "keeps at least one label" in page and not Label.objects.get(pk=mixed.pk).retired
    client.post(change(pos, "restore"))
    assert not Label.objects.get(pk=pos.pk).retired
    assert client.post(change(pos, "explode")).status_code == 404
    assert client.get(settings).status_code == 200 and Example.objects.filter(pk=examples[0].pk).exists()


def test_label_mode_is_fixed_once_labels_exist(project, annotator):
    add_examples(project, ["a text"])
    attempt = annotation_services.claim_next(project=project, annotator=annotator)
    annotation_services.annotation_submit(
        attempt_id=attempt.pk, annotator=annotator, label_ids=[project.labels.first().pk]
    )
    with pytest.raises(Conflict, match="label mode is fixed"):
        annotation_services.project_update(project=project, label_mode="multi")


# --- bulk accept -----------------------------------------------------------------------------------


CONFIDENT = [0.99, 0.97, 0.95, 0.93, 0.91, 0.6, 0.55, 0.5]


@pytest.fixture
def predicted(project, admin_user, auditor, annotator):
    return build_predicted(project)


def build_predicted(project) -> dict:
    """Ten gold texts (five held out for evaluation) and eight unlabeled ones, each with a
    prediction of the current version v1 (accuracy 0.85 against a 0.5 baseline)."""
    ProjectTrainingConfig.objects.update_or_create(project=project, defaults={"holdout_share": 0.5, "enabled": False})
    pos, neg = project.labels.order_by("order", "id")[:2]
    gold = add_examples(project, [f"gold text {i}" for i in range(10)])
    for i, ex in enumerate(gold):
        ex.gold_label = pos if i % 2 == 0 else neg
        ex.save(update_fields=["gold_label"])
    pool = add_examples(project, [f"pool text {i}" for i in range(len(CONFIDENT))])
    cm = {"labels": ["positive", "negative"], "matrix": [[9, 1], [2, 8]]}
    version = make_version(
        project,
        sequence=1,
        annotations=[],
        snapshot_at=timezone.now(),
        metrics={"accuracy": 0.85, "confusion_matrix": cm},
    )
    ProjectTrainingConfig.objects.filter(project=project).update(current_version=version)
    evaluated = list(Example.objects.filter(project=project, gold_label__isnull=False).order_by("text_hash")[:5])
    now = timezone.now()
    rows = []
    # evaluation texts: the first three confidently and right, the fourth confidently wrong, the fifth unsure
    for i, ex in enumerate(evaluated):
        wrong = neg if ex.gold_label_id == pos.pk else pos
        plan = [
            (ex.gold_label, 0.95),
            (ex.gold_label, 0.95),
            (ex.gold_label, 0.95),
            (wrong, 0.92),
            (ex.gold_label, 0.55),
        ]
        rows.append((ex, *plan[i]))
    for i, ex in enumerate(pool):
        rows.append((ex, pos if i % 3 else neg, CONFIDENT[i]))
    Prediction.objects.bulk_create(
        Prediction(
            example=ex,
            project=project,
            version=version,
            label=label,
            confidence=c,
            margin=0.1,
            entropy=0.1,
            updated_at=now,
        )
        for ex, label, c in rows
    )
    return {"project": project, "version": version, "pool": pool, "pos": pos, "neg": neg, "evaluated": evaluated}


def test_preview_counts_labels_samples_and_measures_accuracy_at_the_threshold(client_for, predicted, admin_user):
    project = predicted["project"]
    preview = training_selectors.accept_preview(project=project, min_confidence=0.9)
    # the eight unlabeled texts at >= 0.9: five (gold texts are unlabeled too, but held by nobody's label)
    pool_hits = [c for c in CONFIDENT if c >= 0.9]
    gold_hits = 4  # the evaluation texts at >= 0.9 (the other five gold texts have no prediction)
    assert preview.count == len(pool_hits) + gold_hits
    assert sum(n for _, n in preview.distribution) == preview.count
    assert preview.sample[0].confidence == min(p.confidence for p in preview.sample)
    # evaluation: 4 of the 5 held-out gold texts are predicted at >= 0.9, 3 of them right
    assert (preview.eval_source, preview.eval_total, preview.eval_covered, preview.eval_correct) == ("gold", 5, 4, 3)
    assert preview.accuracy == 0.75 and preview.accuracy_interval[0] < 0.75 < preview.accuracy_interval[1]
    assert not preview.evaluation["no_better_than_baseline"]
    low = training_selectors.accept_preview(project=project, min_confidence=0.5)
    assert (low.eval_covered, low.eval_correct) == (5, 4)
    # a retired label is never taken
    annotation_services.label_retire(project=project, label_id=predicted["neg"].pk)
    assert {
        name for name, _ in training_selectors.accept_preview(project=project, min_confidence=0.0).distribution
    } == {"positive"}
    html = client_for(admin_user).get(reverse("console:accept", args=[project.slug]), {"min_confidence": "0.9"})
    assert html.status_code == 200
    page = html.content.decode()
    assert 'id="accept-accuracy">0.750' in page and 'id="accept-form"' in page
    assert_no_inline_script(page)


def test_accept_then_undo_is_recorded_and_pays_nothing(client_for, predicted, admin_user, auditor):
    project, version = predicted["project"], predicted["version"]
    client = client_for(admin_user)
    url = reverse("console:accept", args=[project.slug])
    entries = LedgerEntry.objects.filter(project=project).count()
    assert client_for(auditor).get(url, {"min_confidence": "0.9"}).status_code == 200
    assert 'id="accept-form"' not in client_for(auditor).get(url, {"min_confidence": "0.9"}).content.decode()
    body = {"min_confidence": "0.9", "label": "", "limit": "3", "version": version.pk}
    assert client_for(auditor).post(reverse("console:accept-do", args=[project.slug]), body).status_code == 403
    client = client_for(admin_user)
    assert client.get(reverse("console:accept-do", args=[project.slug])).status_code == 405
    page = client.post(reverse("console:accept-do", args=[project.slug]), body, follow=True).content.decode()
    batch = AcceptBatch.objects.get(project=project)
    assert f"Bulk accept {batch.pk}: 3 machine label(s) accepted" in page
    assert (batch.accepted, batch.min_confidence, batch.version, batch.created_by) == (3, 0.9, version, admin_user)
    machine = Annotation.objects.filter(project=project, source=Annotation.Source.MACHINE)
    assert set(batch.annotations.all()) == set(machine) and all(a.status == "accepted" for a in machine)
    # undo: a reversal, recorded; the machine labels are rejected, not deleted; nothing is paid either way
    page = client.post(reverse("console:accept-undo", args=[project.slug, batch.pk]), follow=True).content.decode()
    assert f"Bulk accept {batch.pk} undone: 3 machine label(s) rejected." in page
    batch.refresh_from_db()
    assert batch.undone_at is not None and batch.undone_by == admin_user and batch.undone == 3
    assert machine.count() == 3 and set(machine.values_list("status", flat=True)) == {"rejected"}
    assert LedgerEntry.objects.filter(project=project).count() == entries
    page = client.post(reverse("console:accept-undo", args=[project.slug, batch.pk]), follow=True).content.decode()
    assert "was undone already" in page
    # the undone texts are unlabeled again: a new preview offers them
    assert training_selectors.accept_preview(project=project, min_confidence=0.9).count == 9


def test_a_model_no_better_than_its_baseline_is_said_plainly_and_needs_a_tick(client_for, predicted, admin_user):
    project = predicted["project"]
    cm = {"labels": ["positive", "negative"], "matrix": [[10, 0], [10, 0]]}
    weak = make_version(
        project,
        sequence=2,
        annotations=[],
        snapshot_at=timezone.now(),
        metrics={"accuracy": 0.5, "confusion_matrix": cm},
    )
    ProjectTrainingConfig.objects.filter(project=project).update(current_version=weak)
    client = client_for(admin_user)
    page = client.get(reverse("console:accept", args=[project.slug]), {"min_confidence": "0.9"}).content.decode()
    assert 'id="accept-baseline-warning"' in page and "no better than its baseline" in page
    body = {"min_confidence": "0.9", "label": "", "limit": "3", "version": weak.pk}
    refused = client.post(reverse("console:accept-do", args=[project.slug]), body)
    assert refused.status_code == 400 and not AcceptBatch.objects.exists()
    assert (
        client.post(reverse("console:accept-do", args=[project.slug]), {**body, "understood": "on"}).status_code == 302
    )
    assert AcceptBatch.objects.get().accepted == 3


def test_accept_is_refused_when_a_newer_version_is_current_since_the_preview(client_for, predicted, admin_user):
    project, v1 = predicted["project"], predicted["version"]
    v2 = make_version(
        project,
        sequence=2,
        annotations=[],
        snapshot_at=timezone.now() + timedelta(seconds=1),
        metrics={"accuracy": 0.9, "confusion_matrix": {"labels": ["positive", "negative"], "matrix": [[9, 1], [1, 9]]}},
    )
    ProjectTrainingConfig.objects.filter(project=project).update(current_version=v2)
    body = {"min_confidence": "0.9", "label": "", "limit": "3", "version": v1.pk}
    response = client_for(admin_user).post(reverse("console:accept-do", args=[project.slug]), body)
    assert response.status_code == 400 and "preview again" in response.content.decode()
    assert not AcceptBatch.objects.exists()
    with pytest.raises(NotFound):
        training_services.machine_labels_undo(project=project, batch_id=12345, actor=admin_user)
