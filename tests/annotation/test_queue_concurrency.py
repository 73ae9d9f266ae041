"""Claims under concurrency, on the real PostgreSQL: threads, separate connections."""

import threading

import pytest
from django.db import connection, connections, transaction

from annotation import services
from annotation.models import Attempt, Example, Membership
from tests.factories import UserFactory, add_examples, add_member, make_project

pytestmark = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL locking")


def _run_in_threads(fn, n):
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def worker(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_simultaneous_claims_never_share_an_example_beyond_overlap():
    project = make_project(name="Race")
    add_examples(project, [f"text {i}" for i in range(20)])
    annotators = [add_member(project, Membership.Role.ANNOTATOR) for _ in range(8)]

    attempts = _run_in_threads(lambda i: services.claim_next(project=project, annotator=annotators[i]), 8)

    example_ids = [a.example_id for a in attempts]
    assert len(set(example_ids)) == 8


@pytest.mark.django_db(transaction=True)
def test_claims_are_handed_out_while_the_pool_is_being_rescored():
    # given: another transaction holds row locks on every example (as the worker's priority
    # rewrite does), and keeps them while an annotator asks for work
    project = make_project(name="Busy")
    add_examples(project, [f"text {i}" for i in range(5)])
    annotator = add_member(project, Membership.Role.ANNOTATOR, UserFactory())
    locked, release = threading.Event(), threading.Event()

    def rescoring():
        with transaction.atomic():
            Example.objects.filter(project=project).update(priority=1.0)
            locked.set()
            release.wait(timeout=30)
        connections.close_all()

    holder = threading.Thread(target=rescoring)
    holder.start()
    assert locked.wait(timeout=30)
    try:
        # when
        attempt = services.claim_next(project=project, annotator=annotator)
    finally:
        release.set()
        holder.join(timeout=30)
    # then: the annotator got a text instead of "nothing left"
    assert attempt is not None
    assert Attempt.objects.filter(annotator=annotator).count() == 1
    assert connection.vendor == "postgresql"
