"""Fixtures for the training tests: a throwaway model store, projects on a toy data set, and a
simulated annotator who labels what the queue hands out through annotation.services."""

import os
import tempfile

import pytest

from annotation import services as annotation_services
from annotation.models import Label, Membership
from tests.factories import UserFactory, add_examples, add_member, make_project
from training import services

# Worker subprocesses started by this session (tests/conftest.py) inherit the environment:
# give them a throwaway model store instead of the checkout's var/models.
os.environ.setdefault("TALLY_MODEL_STORE", tempfile.mkdtemp(prefix="tally-models-"))

POSITIVE = ["good", "great", "excellent", "wonderful", "superb", "lovely", "delightful", "brilliant"]
NEGATIVE = ["bad", "awful", "terrible", "horrible", "dreadful", "poor", "boring", "dismal"]
FILLER = ["the film was", "this book is", "our dinner was", "that concert felt", "the service was"]


def toy_texts(n: int = 40) -> dict[str, str]:
    """{text: "positive"|"negative"}: separable by a sentiment word."""
    out = {}
    i = 0
    while len(out) < n:
        word_set, label = (POSITIVE, "positive") if i % 2 == 0 else (NEGATIVE, "negative")
        text = f"{FILLER[i % len(FILLER)]} {word_set[(i // 2) % len(word_set)]} number {i}"
        out[text] = label
        i += 1
    return out


@pytest.fixture(autouse=True)
def model_store(settings, tmp_path):
    settings.TALLY_MODEL_STORE = tmp_path / "models"
    settings.TALLY_TRAINING_DEVICE = "cpu"
    return settings.TALLY_MODEL_STORE


@pytest.fixture
def toy():
    return toy_texts(40)


@pytest.fixture
def toy_project(admin_user, toy):
    project = make_project(admin=admin_user, name="Toy", labels=("positive", "negative"))
    add_examples(project, list(toy))
    services.config_update(project=project, model_kind="hashed", holdout_share=0.25, min_labels=4)
    return project


@pytest.fixture
def labeler(toy_project):
    return add_member(toy_project, Membership.Role.ANNOTATOR, UserFactory(username="lab"))


def label_next(project, annotator, truth: dict[str, str], n: int = 1):
    """The simulated annotator: claim what the queue offers, answer with the true label."""
    done = []
    labels = dict(Label.objects.filter(project=project).values_list("name", "id"))
    for _ in range(n):
        attempt = annotation_services.claim_next(project=project, annotator=annotator)
        if attempt is None:
            break
        done.append(
            annotation_services.annotation_submit(
                attempt_id=attempt.pk, annotator=annotator, label_ids=[labels[truth[attempt.example.text]]]
            )
        )
    return done
