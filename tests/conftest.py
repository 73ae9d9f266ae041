"""Shared fixtures. The helpers every directory uses live in tests/support (plain modules);
their fixtures are registered here, once, for the whole suite."""

import pytest
from rest_framework.test import APIClient

from annotation.models import Membership
from tests.factories import UserFactory, add_examples, add_member, make_project
from tests.support.annotators import toy_texts
from training import debounce

pytest_plugins = ["tests.support.browser", "tests.support.model_store", "tests.support.worker"]

NEWS_TEXTS = [
    "Oil prices climb as OPEC weighs output cuts.",
    "Late goal sends United into the cup final.",
    "New chip promises faster phones and cooler laptops.",
    "Leaders meet in Geneva to discuss the ceasefire.",
    "Shares of the retailer fell after weak holiday sales.",
    "Astronomers spot water vapour on a distant planet.",
]


@pytest.fixture(scope="session", autouse=True)
def _fresh_debounce_state():
    """The retraining debounce keeps per-project state in Redis (training.debounce), keyed by
    project id; a new test database hands out the same ids again, so a session starts with none."""
    debounce.forget_all()


@pytest.fixture
def admin_user(db):
    return UserFactory(username="ada-admin")


@pytest.fixture
def project(admin_user):
    return make_project(admin=admin_user, instructions="Is the review positive or negative?")


@pytest.fixture
def annotator(project):
    return add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="ann"))


@pytest.fixture
def auditor(project):
    return add_member(project, Membership.Role.AUDITOR, UserFactory(username="audrey"))


@pytest.fixture
def examples(project):
    return add_examples(project, [f"Example text number {i}" for i in range(10)])


@pytest.fixture
def api():
    def client_for(user=None):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return client_for


@pytest.fixture
def toy():
    return toy_texts(40)


@pytest.fixture
def labeling(db):
    """A news project with four labels, six texts and one annotator (the browser tests')."""
    admin = UserFactory(username="lead")
    project = make_project(admin=admin, name="News", labels=["World", "Sports", "Business", "Sci-Tech"])
    annotator = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="kim"))
    add_examples(project, NEWS_TEXTS)
    return project, annotator
