import pytest

from .world import build


@pytest.fixture
def world(db, model_store):
    return build(model_store=model_store)
