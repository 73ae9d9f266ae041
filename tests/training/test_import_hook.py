"""What an import costs the importing process after its commit (issue 18, item 4): training's
reaction to `examples_imported` is one message, never the work itself (the embedding dispatch
read every example's id and the training config was created there: 78 % of a 500-row import)."""

import io

from annotation.imports import formats, jobs, runs
from training import services, tasks


def test_an_import_sends_one_task_and_does_no_training_work_in_its_process(
    project, monkeypatch, django_capture_on_commit_callbacks
):
    sent, worked = [], []
    monkeypatch.setattr(tasks, "enqueue_cold_start", sent.append)
    monkeypatch.setattr(tasks, "embeddings_schedule", lambda **kwargs: worked.append("embed"))
    monkeypatch.setattr(services, "embeddings_schedule", lambda **kwargs: worked.append("embed"))
    monkeypatch.setattr(services, "config_get", lambda **kwargs: worked.append("config"))
    content = b"text\none\ntwo\n"
    options = formats.import_options(source_name="a.csv")
    batch, _ = jobs.import_batch_create(project=project, created_by=None, source_name="a.csv", options=options)

    with django_capture_on_commit_callbacks(execute=True):
        batch = runs.import_run(batch=batch, stream=io.BytesIO(content))

    assert batch.rows_imported == 2
    assert sent == [project.pk]
    assert worked == []


def test_the_task_does_the_work_the_hook_no_longer_does(project, monkeypatch):
    worked = []
    monkeypatch.setattr(tasks, "embeddings_schedule", lambda *, project: worked.append(("embed", project.pk)))
    monkeypatch.setattr(tasks.coldstart, "cold_start", lambda *, project_id: worked.append(("order", project_id)))

    tasks.cold_start(project.pk)

    assert worked == [("embed", project.pk), ("order", project.pk)]
