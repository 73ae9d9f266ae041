"""In headless Chromium: an admin opens a model version's page, asks why the model predicted
a label, and sees the words that pushed it highlighted."""

import pytest
from django.urls import reverse

from annotation.models import Membership
from tests.factories import UserFactory, add_examples, add_member, make_project
from tests.support.annotators import NEGATIVE, POSITIVE, label_next, toy_texts
from tests.support.browser import open_as
from training import pipeline, selectors, services, tasks
from training.models import TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def trained_toy(transactional_db, admin_user, monkeypatch):
    monkeypatch.setattr(services, "_enqueue", lambda run_id: None)
    truth = toy_texts(40)
    project = make_project(admin=admin_user, name="Toy browser", labels=("positive", "negative"))
    add_examples(project, list(truth))
    services.config_update(project=project, model_kind="hashed", min_labels=4)
    annotator = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="browser-ann"))
    label_next(project, annotator, truth, n=24)  # commits: labels_changed queues a run
    run = TrainingRun.objects.get(project=project, status="queued")
    version = selectors.versions_for(project=project).get(pk=pipeline.execute_run(run_id=run.pk))
    # the explanation a worker would compute on demand, computed here (no worker in this test)
    first = selectors.predictions_for(project=project, ordering="margin", labeled=False).first()
    tasks.explain_prediction.run(version.pk, first.example_id)
    return project, version, first


def test_admin_sees_a_prediction_with_its_highlighted_tokens(browser, live_server, trained_toy, admin_user):
    project, version, prediction = trained_toy
    url = live_server.url + reverse("training-pages:version", kwargs={"slug": project.slug, "sequence": 1})
    context, page = open_as(browser, live_server.url, admin_user)
    errors = []  # script errors and CSP refusals (inline script or style) both land here
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        page.goto(url)
        assert page.locator("h1").inner_text().endswith("model v1 (current)")
        assert page.locator(".chart svg").count() == 2
        page.locator(f'button.why[data-example="{prediction.example_id}"]').click()
        cell = page.locator(f'td.text[data-example="{prediction.example_id}"][data-explained="1"]')
        cell.wait_for(timeout=15_000)
        strong = cell.locator("span.tok[data-strong]").all_inner_texts()
    finally:
        context.close()
    assert errors == []
    sentiment_words = set(POSITIVE) | set(NEGATIVE)
    assert strong and set(strong) <= sentiment_words | set(prediction.example.text.split())
    assert set(strong) & sentiment_words
