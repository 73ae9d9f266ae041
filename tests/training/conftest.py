"""Fixtures for the training tests: every test gets a throwaway model store, and projects on
the toy data set (tests.support.annotators)."""

import pytest

from annotation.models import Membership
from tests.factories import UserFactory, add_examples, add_member, make_project
from training import debounce, services


@pytest.fixture(autouse=True)
def _own_model_store(model_store):
    return model_store


@pytest.fixture(autouse=True)
def _fresh_debounce_state():
    """No debounce state from an earlier test (SQLite hands a rolled-back project's id out again)."""
    debounce.forget_all()


@pytest.fixture
def toy_project(admin_user, toy):
    project = make_project(admin=admin_user, name="Toy", labels=("positive", "negative"))
    add_examples(project, list(toy))
    services.config_update(project=project, model_kind="hashed", holdout_share=0.25, min_labels=4)
    return project


@pytest.fixture
def labeler(toy_project):
    return add_member(toy_project, Membership.Role.ANNOTATOR, UserFactory(username="lab"))
