"""Honest figures on every version (issue 12, item 4): each warning, the baseline, the intervals."""

from datetime import UTC, datetime

import numpy as np
import pytest

from annotation import services as annotation_services
from annotation.models import Label
from tests.factories import UserFactory, add_examples, add_member, make_project
from tests.labor_ledger.report_helpers import make_version
from training.ml.evaluation import bootstrap_macro_f1, evaluation_summary, wilson_interval


def metrics_of(matrix, labels=("World", "Sports")):
    return {"confusion_matrix": {"labels": list(labels), "matrix": matrix}}


ENOUGH = {"World": 50, "Sports": 50}


def test_wilson_interval_matches_the_textbook_value():
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 0) is None
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_a_one_class_model_is_no_better_than_always_answering_the_majority():
    # 40 World, 4 Sports held out; the model says World for everything: accuracy 0.909
    summary = evaluation_summary(metrics_of([[40, 0], [4, 0]]), ENOUGH)
    assert summary["accuracy"] == pytest.approx(40 / 44)
    assert summary["baseline"] == {"name": "majority class", "label": "World", "accuracy": pytest.approx(40 / 44)}
    assert summary["no_better_than_baseline"] is True
    assert any(w.startswith("No better than guessing") for w in summary["warnings"])
    assert summary["per_class_recall"] == {"World": 1.0, "Sports": 0.0}
    assert summary["macro_f1"] == pytest.approx((2 * (40 / 44) / (1 + 40 / 44)) / 2)


def test_a_model_that_beats_the_baseline_gets_no_such_warning():
    summary = evaluation_summary(metrics_of([[38, 2], [1, 3]]), ENOUGH)
    assert summary["no_better_than_baseline"] is False
    assert not any("guessing" in w for w in summary["warnings"])


def test_a_label_with_fewer_than_five_training_texts_is_named():
    summary = evaluation_summary(metrics_of([[20, 0], [0, 20]]), {"World": 60, "Sports": 4})
    assert ["The label 'Sports' has 4 training texts" in w for w in summary["warnings"]].count(True) == 1
    assert summary["train_class_counts"] == {"World": 60, "Sports": 4}


def test_a_small_evaluation_set_says_so_and_widens_its_intervals():
    small = evaluation_summary(metrics_of([[9, 1], [1, 9]]), ENOUGH)
    large = evaluation_summary(metrics_of([[90, 10], [10, 90]]), ENOUGH)
    assert any("fewer than 30" in w for w in small["warnings"])
    assert not any("fewer than 30" in w for w in large["warnings"])
    width = lambda iv: iv[1] - iv[0]  # noqa: E731
    assert width(small["accuracy_interval"]) > width(large["accuracy_interval"])
    assert width(small["macro_f1_interval"]) > width(large["macro_f1_interval"])
    assert large["macro_f1_interval"][0] < large["macro_f1"] < large["macro_f1_interval"][1]


def test_an_evaluation_set_missing_a_label_says_which():
    summary = evaluation_summary(
        metrics_of([[30, 0, 0], [0, 10, 0], [0, 0, 0]], ("A", "B", "C")), {"A": 9, "B": 9, "C": 9}
    )
    assert any("no text of 'C'" in w for w in summary["warnings"])
    assert summary["per_class_recall"]["C"] is None


def test_no_evaluation_set_at_all_is_said_plainly():
    summary = evaluation_summary({}, {"World": 10})
    assert summary["eval_size"] == 0 and summary["accuracy"] is None
    assert any("no evaluation set" in w for w in summary["warnings"])


def test_the_bootstrap_is_repeatable():
    cm = np.array([[12, 3], [4, 9]])
    assert bootstrap_macro_f1(cm) == bootstrap_macro_f1(cm)


@pytest.mark.django_db
def test_the_version_page_and_api_say_a_one_class_model_is_no_better_than_the_baseline(api, client):
    admin = UserFactory(username="eva-admin")
    project = make_project(admin=admin, name="Eval", labels=("World", "Sports"))
    annotator = add_member(project, user=UserFactory(username="eva-ann"))
    add_examples(project, [f"text {i}" for i in range(6)])
    world = Label.objects.get(project=project, name="World")
    labeled = []
    for _ in range(6):
        attempt = annotation_services.claim_next(project=project, annotator=annotator)
        labeled.append(
            annotation_services.annotation_submit(attempt_id=attempt.pk, annotator=annotator, label_ids=[world.pk])
        )
    make_version(
        project,
        sequence=1,
        annotations=labeled,
        snapshot_at=datetime(2030, 1, 1, tzinfo=UTC),
        classes=list(project.labels.order_by("order").values_list("id", flat=True)),
        metrics={
            "eval_size": 44,
            "accuracy": 40 / 44,
            "macro_f1": 0.476,
            "eval_source": "holdout",
            "confusion_matrix": {"labels": ["World", "Sports"], "matrix": [[40, 0], [4, 0]]},
        },
    )
    body = api(admin).get(f"/api/projects/{project.slug}/models/1/").json()
    assert body["evaluation"]["no_better_than_baseline"] is True
    assert body["evaluation"]["train_class_counts"] == {"World": 6, "Sports": 0}
    client.force_login(admin)
    page = client.get(f"/training/{project.slug}/models/1/").content.decode()
    assert "No better than guessing" in page
    assert "The label &#x27;Sports&#x27; has 0 training texts" in page
