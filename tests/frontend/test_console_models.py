"""The Models page: runs with stage, progress and failure (and the JSON it polls), versions
linked to their page, Labor Card and run, the retrain button and the training settings."""

import pytest
from django.core.cache import cache
from django.urls import reverse

from tests.factories import UserFactory, add_member
from tests.labor_ledger.report_helpers import build_scenario
from tests.support.pages import assert_no_inline_script
from training import selectors as training_selectors
from training.hooks import VersionRegistered, version_registered
from training.models import ProjectTrainingConfig, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def scenario(db):
    cache.clear()
    built = build_scenario()
    for version in built["versions"].values():  # registered: the worker indexes each at once
        version_registered.send(VersionRegistered(version_id=version.pk, project_id=version.project_id))
    return built


def test_models_page_per_role(client_for, scenario, other_admin):
    project = scenario["project"]
    url = reverse("console:models", args=[project.slug])
    html = client_for(scenario["admin"]).get(url).content.decode()
    assert 'id="retrain-form"' in html and 'id="training-settings-form"' in html
    assert_no_inline_script(html)
    html = client_for(scenario["auditor"]).get(url).content.decode()
    assert 'id="retrain-form"' not in html and 'id="training-settings-form"' not in html
    assert client_for(scenario["A"]).get(url).status_code == 403
    assert client_for(other_admin).get(url).status_code == 404
    assert client_for(other_admin).get(reverse("console:runs-json", args=[project.slug])).status_code == 404


def test_versions_link_page_labor_card_and_run_both_ways(client_for, scenario):
    project, admin = scenario["project"], scenario["admin"]
    v2 = scenario["versions"][2]
    client = client_for(admin)
    html = client.get(reverse("console:models", args=[project.slug])).content.decode()
    assert reverse("training-pages:version", args=[project.slug, 2]) in html
    assert reverse("labor_card:version", args=[project.slug, 2]) in html
    assert f'href="#run-{v2.run_id}"' in html and f'id="run-{v2.run_id}"' in html
    page = client.get(reverse("training-pages:version", args=[project.slug, 2])).content.decode()
    assert reverse("labor_card:version", args=[project.slug, 2]) in page
    assert f"{reverse('console:models', args=[project.slug])}#run-{v2.run_id}" in page
    card = client.get(reverse("labor_card:version", args=[project.slug, 2])).content.decode()
    assert reverse("training-pages:version", args=[project.slug, 2]) in card
    assert f"#run-{v2.run_id}" in card


def test_retrain_queues_a_run_once_and_says_so(client_for, scenario):
    project, admin = scenario["project"], scenario["admin"]
    client = client_for(admin)
    url = reverse("console:retrain", args=[project.slug])
    assert client.get(url).status_code == 405  # never on GET
    page = client.post(url, {"loop": "fast"}, follow=True).content.decode()
    run = TrainingRun.objects.get(project=project, status="queued")
    assert f"Training run {run.pk} is queued." in page
    page = client.post(url, {"loop": "fast"}, follow=True).content.decode()
    assert f"Run {run.pk} is already queued for this project." in page
    assert client_for(scenario["auditor"]).post(url).status_code == 403


def test_runs_json_reports_stage_progress_and_failure(client_for, scenario):
    project = scenario["project"]
    running = TrainingRun.objects.create(
        project=project, status="running", stage="embedding", progress={"embedded": 50, "to_embed": 100}
    )
    failed = TrainingRun.objects.create(project=project, status="failed", stage="failed", error="Only one label seen")
    data = client_for(scenario["auditor"]).get(reverse("console:runs-json", args=[project.slug])).json()
    runs = {r["id"]: r for r in data["runs"]}
    assert data["active"] is True
    assert runs[running.pk]["stage"] == "embedding" and runs[running.pk]["percent"] == 6  # half of stage 1 of 8
    assert runs[failed.pk]["error"] == "Only one label seen" and runs[failed.pk]["status"] == "failed"
    html = client_for(scenario["admin"]).get(reverse("console:models", args=[project.slug])).content.decode()
    assert "Only one label seen" in html and 'data-status="running"' in html


def test_training_settings_form_saves_through_the_service(client_for, scenario):
    project, admin = scenario["project"], scenario["admin"]
    form = {
        "model_kind": "hashed",
        "sampling": "entropy",
        "retrain_every_n_labels": 5,
        "deep_every_n_labels": 0,
        "min_labels": 6,
        "qc_share": 0.2,
        "holdout_share": 0.1,
        "max_gold_eval": 100,
    }
    response = client_for(admin).post(reverse("console:training-settings", args=[project.slug]), form)
    assert response.status_code == 302
    config = ProjectTrainingConfig.objects.get(project=project)
    assert (config.enabled, config.model_kind, config.min_labels, config.qc_share) == (False, "hashed", 6, 0.2)
    url = reverse("console:training-settings", args=[project.slug])
    response = client_for(admin).post(url, {**form, "qc_share": 0.9})
    assert response.status_code == 400 and "less than or equal to 0.5" in response.content.decode()
    assert training_selectors.training_config(project=project).qc_share == 0.2
    outsider = add_member(project, "annotator", UserFactory(username="late"))
    assert client_for(outsider).post(reverse("console:training-settings", args=[project.slug]), form).status_code == 403
