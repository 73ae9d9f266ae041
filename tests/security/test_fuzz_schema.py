"""schemathesis (pinned in requirements-dev.txt) fuzzes every operation of /api/schema/ as an
annotator, an admin and an auditor of a populated project: no answer is a 5xx, and every
answer with a documented status matches the schema (body and content type).

The app is called in-process (WSGI) on the test database; path slugs point at the real
project so that generated bodies and ids reach the views, not just the 404 of a random slug.
"""

import json
from contextlib import contextmanager

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

EXAMPLES_PER_OPERATION = 12

ROLES = {"annotator": "a-owner", "admin": "a-admin", "auditor": "a-auditor"}
# Most generated JSON bodies are sent as they are; some are wrapped this deep in lists and
# objects, past the parser's limit (core/parsers.py): 400, never a 5xx. Deeper bodies than
# the client's json.dumps can write are sent as bytes in tests/security/test_no_5xx.py.
DEPTHS = [0, 0, 0, 65, 300]


def deeper(body, depth: int):
    for i in range(depth):
        body = [body] if i % 2 else {"x": body}
    return body


@contextmanager
def keep_the_test_connection():
    """As Django's test client does: the in-process WSGI app must not close the connection
    that holds the test's transaction at the end of each request. (Not around the test
    client's own requests: it reconnects the handler when it finishes one.)"""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr("training.apis.explain_prediction.delay", lambda *a, **k: None)
    monkeypatch.setattr("training.services._enqueue", lambda run_id: None)


@pytest.mark.slow
@pytest.mark.parametrize("role", list(ROLES))
def test_fuzzing_the_api_finds_no_5xx_and_no_answer_off_the_schema(world, role):
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = schemathesis.openapi.from_dict(json.loads(response.content))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40
    app = WSGIHandler()
    token = Token.objects.create(user=world.users[ROLES[role]]).key
    headers = {"Authorization": f"Token {token}"}
    failures = []

    def fuzz_one(operation):
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(), own_slug=st.booleans(), depth=st.sampled_from(DEPTHS))
        def fuzz(case, own_slug, depth):
            if own_slug and case.path_parameters and "slug" in case.path_parameters:
                case.path_parameters["slug"] = world.a.slug
            if depth and case.media_type == "application/json" and not isinstance(case.body, NotSet):
                case.body = deeper(case.body, depth)
            answer = case.call(app=app, headers=headers)
            case.validate_response(
                answer,
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
                headers=headers,
            )

        fuzz()

    with keep_the_test_connection():
        for operation in operations:
            try:
                fuzz_one(operation)
            except BaseException as failure:  # noqa: BLE001 (schemathesis raises a group): report all
                failures.append(f"{operation.label}: {str(failure)[:1500]}")
    assert not failures, "\n\n".join(failures)


# --- what the fuzzer found, pinned as plain regression tests ------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"hyperparams": {"epochs": "x\u0000y"}},  # PostgreSQL refuses NUL in jsonb: was a 500
        {"hyperparams": {"\u0000": 1}},
        {"hyperparams": {"weights_path": "/etc/passwd"}},  # unknown settings were stored silently
        {"hyperparams": {"buckets": 10**12}},  # a model no worker can hold
        {"hyperparams": {"epochs": True}},
        {"hyperparams": {"dim": -1}},
        {"seed": 2**40},  # past the column's range: was a 500 from full_clean()
    ],
)
def test_training_config_refuses_what_the_database_or_worker_cannot_take(api, project, admin_user, body):
    response = api(admin_user).patch(f"/api/projects/{project.slug}/training/config/", body, format="json")
    assert response.status_code == 400, response.content


def test_training_config_takes_known_hyperparameters(api, project, admin_user):
    body = {"hyperparams": {"epochs": 20, "learning_rate": 0.01, "buckets": 1 << 16}, "seed": -5}
    response = api(admin_user).patch(f"/api/projects/{project.slug}/training/config/", body, format="json")
    assert response.status_code == 200, response.content
    assert response.data["hyperparams"] == body["hyperparams"] and response.data["seed"] == -5


def test_every_hyperparameter_has_a_limit():
    from dataclasses import fields

    from training.apis import HYPERPARAM_LIMITS
    from training.ml.classifiers import HyperParams

    assert set(HYPERPARAM_LIMITS) == {f.name for f in fields(HyperParams)} - HyperParams.NOT_SETTABLE


def test_the_service_turns_model_validation_into_a_domain_error(project):
    from core.errors import ValidationFailed
    from training import services

    with pytest.raises(ValidationFailed, match="seed"):
        services.config_update(project=project, seed=2**40)


# --- hyper-parameters against the memory budget (issue 15, item 3) ------------------------------


def test_a_model_over_the_memory_budget_is_400_naming_the_limit(api, project, admin_user):
    """`buckets=4194304, dim=1024` is 4.3 G parameters: 17 GB for the embedding alone."""
    body = {"hyperparams": {"buckets": 4194304, "dim": 1024}}
    response = api(admin_user).patch(f"/api/projects/{project.slug}/training/config/", body, format="json")
    assert response.status_code == 400, response.content
    detail = str(response.data)
    assert "TALLY_TRAINING_MEMORY_BUDGET_MB" in detail and "GB" in detail


@pytest.mark.parametrize(
    "hyperparams",
    [
        {"buckets": 1 << 22, "dim": 256},  # hashed embedding and its Adam state
        {"batch_size": 65536, "max_length": 512},  # the deep loop's activations
        {"hidden": 4096, "batch_size": 65536},
    ],
)
def test_each_model_is_held_to_the_budget(project, hyperparams, settings):
    from core.errors import ValidationFailed
    from training import services

    settings.TALLY_TRAINING_MEMORY_BUDGET_MB = 4096
    with pytest.raises(ValidationFailed, match="TALLY_TRAINING_MEMORY_BUDGET_MB"):
        services.config_update(project=project, hyperparams=hyperparams)


def test_the_defaults_and_moderate_settings_fit_the_default_budget(project):
    from training import services
    from training.memory import estimate_bytes
    from training.ml.classifiers import HyperParams

    for kind in ("hashed", "minilm", "minilm-ft"):
        assert estimate_bytes(kind, HyperParams(), n_classes=10) < 2**30
    services.config_update(project=project, hyperparams={"buckets": 1 << 20, "dim": 128, "batch_size": 64})
    services.config_update(project=project, model_kind="hashed")


def test_a_smaller_budget_refuses_what_a_larger_one_takes(project, settings):
    from core.errors import ValidationFailed
    from training import services

    settings.TALLY_TRAINING_MEMORY_BUDGET_MB = 64
    with pytest.raises(ValidationFailed, match="64 MB"):
        services.config_update(project=project, model_kind="hashed", hyperparams={"buckets": 1 << 20, "dim": 128})
