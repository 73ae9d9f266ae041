"""The debounce's Redis script on its own (training.debounce): what one label event answers for
a given state. The database side is tested through labels_changed in test_services.py."""

import pytest
import redis

from training import debounce

PROJECT = 987_654  # no database here: a project id no test database reaches


@pytest.fixture(autouse=True)
def _no_state():
    debounce.forget_all()
    yield
    debounce.forget_all()


def state(gen, **overrides):
    values = (
        dict(enabled=True, n=2, deep_n=0, ready=True, need=0, classes=[], counted=0, deep=0, pending=False) | overrides
    )
    debounce.store(PROJECT, gen, **values)


def actions(n, label_ids=(1,)):
    return [debounce.count(PROJECT, list(label_ids)).action for _ in range(n)]


def test_no_state_asks_the_database_and_a_changed_config_makes_it_ask_again():
    first = debounce.count(PROJECT, [1])
    assert first.action == "fill"
    state(first.gen)
    assert actions(1) == ["skip"]  # 1 of 2
    debounce.invalidate(PROJECT)  # config_update, after commit
    assert actions(1) == ["fill"]
    state(first.gen)  # a state read before the change is refused
    assert actions(1) == ["fill"]


def test_every_n_labels_one_run_pending_and_its_start_lets_the_next_one_queue():
    state(debounce.count(PROJECT, [1]).gen)
    assert actions(6) == ["skip", "queue", "skip", "skip", "skip", "skip"]  # pending: counted, not queued
    debounce.run_started(PROJECT)  # the run is claimed, before it reads the labels
    assert actions(2) == ["skip", "queue"]


def test_the_deep_loop_every_deep_n_labels_upgrades_a_pending_run():
    state(debounce.count(PROJECT, [1]).gen, n=1, deep_n=3)
    assert actions(4) == ["queue", "skip", "deep", "skip"]


def test_before_a_first_model_the_database_is_asked_only_when_the_labels_may_be_enough():
    gen = debounce.count(PROJECT, [1]).gen
    state(gen, n=1, ready=False, need=3, classes=[1])
    assert actions(3, label_ids=(1,)) == ["skip", "skip", "skip"]  # enough rows, one class
    assert actions(1, label_ids=(2,)) == ["check"]  # a second class: maybe enough
    assert debounce.count(PROJECT, None).action == "check"  # a status change: Redis cannot tell


def test_training_turned_off_counts_nothing():
    state(debounce.count(PROJECT, [1]).gen, enabled=False)
    assert actions(3) == ["skip", "skip", "skip"]


def test_without_redis_the_caller_is_told_to_ask_the_database(monkeypatch):

    monkeypatch.setattr(debounce, "_client", redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))
    assert debounce.count(PROJECT, [1]) is None
    debounce.run_started(PROJECT)  # logged, not raised
    debounce.invalidate(PROJECT)
