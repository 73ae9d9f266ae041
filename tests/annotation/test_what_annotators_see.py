"""What annotators see (issue 14): no gold labels, priorities, margins or hidden columns, on any
endpoint that returns a text; admins and auditors still see everything."""

import json

import pytest
from django.urls import reverse

from annotation.imports import formats
from annotation.models import Example, ImportBatch, Membership
from core.errors import ValidationFailed
from tests.annotation.import_helpers import run_import
from tests.factories import UserFactory, add_member

SECRET_KEYS = {"gold_label", "priority", "margin", "submitted_count"}


@pytest.fixture
def imported(project):
    """Texts with gold labels and two extra columns, `source` made visible, `answer_id` not."""
    rows = ["text,label,source,answer_id"] + [f"Text number {i},positive,feed {i},positive-{i}" for i in range(6)]
    batch = run_import(project, ("\n".join(rows) + "\n").encode(), label_column="label", visible_columns="source")
    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert Example.objects.filter(project=project, gold_label__isnull=False).count() == 6
    return project


def keys_in(payload) -> set[str]:
    found = set()
    if isinstance(payload, dict):
        for key, value in payload.items():
            found.add(key)
            found |= keys_in(value)
    elif isinstance(payload, list):
        for item in payload:
            found |= keys_in(item)
    return found


def test_no_endpoint_shows_an_annotator_gold_priority_or_hidden_columns(imported, annotator, api):
    client = api(annotator)
    slug = imported.slug
    answers = []
    claim = client.post(reverse("annotation:queue-next", kwargs={"slug": slug}), {}, format="json")
    answers.append(claim)
    attempt = claim.data["id"]
    answers.append(client.post(reverse("annotation:attempt-heartbeat", kwargs={"attempt_id": attempt}), {}))
    label = imported.labels.first().pk
    answers.append(
        client.post(
            reverse("annotation:attempt-submit", kwargs={"attempt_id": attempt}), {"labels": [label]}, format="json"
        )
    )
    answers.append(client.post(reverse("annotation:undo", kwargs={"slug": slug}), {}, format="json"))
    answers.append(client.get(reverse("annotation:example-list", kwargs={"slug": slug})))
    answers.append(client.get(reverse("annotation:annotation-list", kwargs={"slug": slug})))
    second = client.post(reverse("annotation:queue-next", kwargs={"slug": slug}), {}, format="json")
    answers.append(second)
    answers.append(client.post(reverse("annotation:attempt-skip", kwargs={"attempt_id": second.data["id"]}), {}))
    for answer in answers:
        assert answer.status_code < 300, answer.content
        body = json.loads(answer.content or b"{}")
        assert not keys_in(body) & SECRET_KEYS, (answer.wsgi_request.path, body)
        assert "answer_id" not in answer.content.decode()
        assert "positive-" not in answer.content.decode()
    assert claim.data["example"]["meta"] == {"source": claim.data["example"]["meta"]["source"]}


@pytest.mark.parametrize("role", [Membership.Role.ADMIN, Membership.Role.AUDITOR])
def test_admins_and_auditors_still_see_gold_and_every_column(imported, role, api):
    reader = add_member(imported, role, UserFactory())
    body = api(reader).get(reverse("annotation:example-list", kwargs={"slug": imported.slug})).json()
    first = body["results"][0]
    assert first["gold_label"] == "positive" and "priority" in first
    assert set(first["meta"]) == {"source", "answer_id"}


def test_by_default_annotators_see_no_extra_column(project, annotator, api):
    run_import(project, b"text,id\nA text,secret-1\n")
    claim = api(annotator).post(reverse("annotation:queue-next", kwargs={"slug": project.slug}), {}, format="json")
    assert claim.data["example"]["meta"] == {}


def test_the_text_or_label_column_cannot_be_an_extra_visible_column():
    with pytest.raises(ValidationFailed):
        formats.import_options(source_name="a.csv", label_column="label", visible_columns="label")
