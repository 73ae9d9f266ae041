"""Fixtures for the reliability tests: a toy project ready to train, with a little paid work
on it (tests/reliability/toy.py)."""

import pytest

from .toy import make_toy_project


@pytest.fixture
def toy_project(admin_user, toy, model_store):
    return make_toy_project(admin_user, toy)
