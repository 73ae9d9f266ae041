"""A model store of the test's own, and training on the CPU."""

import pytest


@pytest.fixture
def model_store(settings, tmp_path):
    settings.TALLY_MODEL_STORE = tmp_path / "models"
    settings.TALLY_TRAINING_DEVICE = "cpu"
    return settings.TALLY_MODEL_STORE
