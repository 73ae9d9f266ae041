"""Concurrent writers against the real PostgreSQL: threads, each with its own connection and
transaction, released together by a barrier. Nothing pays twice and the chain never forks."""

import threading
from collections import Counter

import pytest
from django.db import connection

from annotation import services as annotation_services
from annotation.models import Annotation
from core.errors import Conflict
from labor_ledger import selectors, services, settlement
from labor_ledger.models import LedgerEntry
from tests.factories import add_member

from .util import at, live_pay

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL"),
]

THREADS = 8


def in_threads(n, fn):
    """Run fn(i) in n threads started at the same moment; return (results, errors)."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, [None] * n

    def target(i):
        try:
            barrier.wait(timeout=30)
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - collected and asserted on below
            errors[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung: a deadlock?"
    return results, errors


def _shown_claim(project, annotator, now):
    attempt = annotation_services.claim_next(project=project, annotator=annotator, now=now)
    annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=now)
    return attempt


def test_concurrent_retries_with_one_key_pay_once(project, examples, annotator, policy):
    attempt = _shown_claim(project, annotator, at(0))
    label = project.labels.first()

    def submit(i):
        return annotation_services.annotation_submit(
            attempt_id=attempt.pk, annotator=annotator, label_ids=[label.pk], idempotency_key="same-key", now=at(10)
        ).pk

    results, errors = in_threads(THREADS, submit)
    assert errors == [None] * THREADS
    assert len(set(results)) == 1
    annotation = Annotation.objects.get()
    assert live_pay(annotation).count() == 1
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.PIECE_PAY).count() == 1
    assert selectors.ledger_verify(project=project).ok


def test_concurrent_submissions_of_one_attempt_with_different_keys_pay_once(project, examples, annotator, policy):
    attempt = _shown_claim(project, annotator, at(0))
    label = project.labels.first()

    def submit(i):
        return annotation_services.annotation_submit(
            attempt_id=attempt.pk, annotator=annotator, label_ids=[label.pk], idempotency_key=f"key-{i}", now=at(10)
        ).pk

    results, errors = in_threads(THREADS, submit)
    assert sum(r is not None for r in results) == 1
    assert all(isinstance(e, Conflict) for e in errors if e is not None)
    assert Annotation.objects.count() == 1
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.PIECE_PAY).count() == 1


def test_concurrent_work_by_many_annotators_never_forks_the_chain(project, examples, annotator, policy, admin_user):
    # given: four annotators, each holding two shown claims (the on-screen text and the prefetched one)
    annotators = [annotator] + [add_member(project) for _ in range(3)]
    claims = []
    for user in annotators:
        first = _shown_claim(project, user, at(0))
        second = annotation_services.claim_next(
            project=project, annotator=user, exclude_attempt_ids=[first.pk], now=at(0)
        )
        annotation_services.attempt_heartbeat(attempt_id=second.pk, annotator=user, now=at(1))
        claims += [(user, first), (user, second)]
    label = project.labels.first()

    # when: all eight submit at once, while a reading closes and an admin posts a bonus
    def act(i):
        if i < len(claims):
            user, attempt = claims[i]
            return annotation_services.annotation_submit(
                attempt_id=attempt.pk,
                annotator=user,
                label_ids=[label.pk],
                idempotency_key=f"a{attempt.pk}",
                now=at(20),
            )
        if i == len(claims):
            annotation_services.instructions_heartbeat(project=project, annotator=annotator, now=at(2))
            return annotation_services.instructions_close(project=project, annotator=annotator, now=at(7))
        return services.manual_entry_create(
            project=project,
            annotator=annotators[1],
            kind="bonus",
            amount=1,
            reason="thanks",
            actor=admin_user,
            idempotency_key="bonus-1",
            now=at(20),
        )

    results, errors = in_threads(len(claims) + 2, act)

    # then
    assert errors == [None] * (len(claims) + 2)
    seqs = list(LedgerEntry.objects.filter(project=project).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    paid = Counter(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.PIECE_PAY).values_list("annotation_id", flat=True))
    assert set(paid.values()) == {1} and len(paid) == len(claims)
    result = selectors.ledger_verify(project=project)
    assert result.ok, result.problems


def test_settlement_racing_with_submissions_stays_consistent(project, examples, annotator, policy):
    other = add_member(project)
    for user in (annotator, other):  # work on day 1, to be settled on day 2
        attempt = _shown_claim(project, user, at(0))
        annotation_services.annotation_submit(
            attempt_id=attempt.pk, annotator=user, label_ids=[project.labels.first().pk], now=at(600)
        )
    day2 = {u.pk: _shown_claim(project, u, at(days=1)) for u in (annotator, other)}

    def act(i):
        if i < 2:
            return settlement.settle_due(project=project, now=at(days=1, seconds=30))
        user = (annotator, other)[i - 2]
        return annotation_services.annotation_submit(
            attempt_id=day2[user.pk].pk,
            annotator=user,
            label_ids=[project.labels.first().pk],
            now=at(days=1, seconds=30),
        )

    results, errors = in_threads(4, act)
    assert errors == [None] * 4
    assert sorted(len(r) for r in results[:2]) == [0, 2]  # one settles both annotators, the other finds nothing due
    result = selectors.ledger_verify(project=project)
    assert result.ok, result.problems
