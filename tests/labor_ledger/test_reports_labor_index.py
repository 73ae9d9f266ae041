"""The per-version labor index (labor_ledger/labor_index.py) is written when its input changes:
by the worker, right after training registers a version (training.hooks.version_registered,
connected in LaborLedgerConfig.ready()), and once by `manage.py labor_index_backfill` for
versions registered before. Cards and reports of a version without one say so."""

import logging

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from labor_ledger import labor_index
from labor_ledger.models import VersionLabelDelta, VersionLaborIndex
from labor_ledger.reports import build
from labor_ledger.reports import card as labor_card
from training import pipeline
from training import services as training_services
from training.hooks import VersionRegistered, version_registered
from training.models import ModelVersion, TrainingRun

from .report_helpers import build_scenario


@pytest.fixture
def scenario(db):
    """The hand-worked project, its three versions registered directly: nobody announced them."""
    cache.clear()
    return build_scenario()


def announce(version):
    version_registered.send(VersionRegistered(version_id=version.pk, project_id=version.project_id))


def indexed():
    return set(VersionLaborIndex.objects.values_list("version__sequence", flat=True))


def test_registering_a_version_indexes_it_and_the_unindexed_ones_before_it(scenario):
    versions = scenario["versions"]
    assert indexed() == set()
    announce(versions[2])
    assert indexed() == {1, 2}  # v2's delta needs v1's manifest: v1 first, in order
    announce(versions[3])
    assert indexed() == {1, 2, 3}
    # v1 adds its three labels; v2 adds a4, a5 and drops a3; v3 adds a4 and drops a2, a3
    assert VersionLabelDelta.objects.filter(sign=1).count() == 3 + 2 + 1
    assert VersionLabelDelta.objects.filter(sign=-1).count() == 1 + 2
    before = VersionLabelDelta.objects.count()
    announce(versions[3])  # a duplicate announcement: nothing new
    assert VersionLabelDelta.objects.count() == before


def test_a_trained_version_is_indexed_by_the_worker_after_it_commits(
    scenario, settings, tmp_path, django_capture_on_commit_callbacks
):
    # given: the project trains again (the scenario's versions were never announced)
    settings.TALLY_MODEL_STORE = tmp_path / "models"
    settings.TALLY_TRAINING_DEVICE = "cpu"
    project = scenario["project"]
    training_services.config_update(project=project, enabled=True, model_kind="hashed", min_labels=2, holdout_share=0.0)
    run = TrainingRun.objects.create(project=project, requested_by=scenario["admin"], trigger=TrainingRun.Trigger.ADMIN)
    # when: the worker's run registers a version; nothing is indexed before its commit
    with django_capture_on_commit_callbacks(execute=True):
        version_id = pipeline.execute_run(run_id=run.pk)
        assert version_id is not None, TrainingRun.objects.get(pk=run.pk).error
        assert indexed() == set()
    # then
    version = ModelVersion.objects.get(pk=version_id)
    assert indexed() == {1, 2, 3, version.sequence}
    card = labor_card.build_card(project=project, version=version)
    assert card["scope"]["labels_counted"] == version.n_annotations


def test_a_failed_index_is_logged_and_does_not_fail_the_registration(scenario, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(labor_index, "versions_index", broken)
    with caplog.at_level(logging.ERROR, logger="labor_ledger.labor_index"):
        announce(scenario["versions"][1])  # no exception reaches training
    assert "labor_index_backfill" in caplog.text
    assert indexed() == set()


def test_the_backfill_command_indexes_existing_versions_once(scenario, capsys):
    call_command("labor_index_backfill")
    assert indexed() == {1, 2, 3}
    assert "Indexed 3 model versions in 1 project" in capsys.readouterr().out
    call_command("labor_index_backfill", "--project", scenario["project"].slug)
    assert "Indexed 0 model versions in 1 project" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No project"):
        call_command("labor_index_backfill", "--project", "nope")


def test_the_index_is_not_polled_for(settings):
    from config.celery_app import app

    app.loader.import_default_modules()
    assert "labor_ledger.index_model_versions" not in app.tasks
    assert all(e["task"] != "labor_ledger.index_model_versions" for e in settings.CELERY_BEAT_SCHEDULE.values())


def test_a_version_not_indexed_yet_says_so_everywhere(scenario, tmp_path):
    project = scenario["project"]
    announce(scenario["versions"][1])  # v2 and v3: registered, not indexed yet
    # the functions
    with pytest.raises(labor_index.VersionNotIndexed, match="2, 3 of project .* are not indexed yet"):
        build.labor_report(project=project, by="version")
    with pytest.raises(labor_index.VersionNotIndexed, match="Model version 2 of project .* is not indexed yet"):
        labor_card.labor_card(version=scenario["versions"][2])
    assert labor_card.labor_card(version=scenario["versions"][1])["scope"]["version"] == 1  # v1 needs only v1
    # the API and the page
    client = Client()
    client.force_login(scenario["auditor"])
    answer = client.get(reverse("labor_ledger:labor-card", args=[project.slug, 3]))
    assert answer.status_code == 409
    assert answer.json()["code"] == "version_not_indexed" and "not indexed yet" in answer.json()["detail"]
    assert "no-store" in answer["Cache-Control"]
    answer = client.get(reverse("labor_ledger:labor-report", args=[project.slug]) + "?by=version&file_format=csv")
    assert answer.status_code == 409 and "labor_index_backfill" in answer.json()["detail"]
    page = client.get(reverse("labor_card:version", args=[project.slug, 2]))
    assert page.status_code == 409
    assert "Not indexed yet" in page.content.decode() and "Model version 2" in page.content.decode()
    assert "no-store" in page["Cache-Control"]
    # the command
    with pytest.raises(CommandError, match="not indexed yet"):
        call_command("labor_report", "--project", project.slug, "--format", "csv", "--out", str(tmp_path / "x.csv"))
    # reports that do not read the index are unaffected
    assert client.get(reverse("labor_ledger:labor-report", args=[project.slug]) + "?by=annotator").status_code == 200
    assert indexed() == {1}  # none of it computed anything
