import pytest

from .world import build


@pytest.fixture
def model_store(settings, tmp_path):
    settings.TALLY_MODEL_STORE = tmp_path / "models"
    settings.TALLY_TRAINING_DEVICE = "cpu"
    return settings.TALLY_MODEL_STORE


@pytest.fixture
def world(db, model_store):
    return build(model_store=model_store)
