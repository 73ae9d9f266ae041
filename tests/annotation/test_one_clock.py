"""One person, one clock (issue 14): whatever claims, readings, tabs and projects are open,
the active seconds credited to one person never exceed the wall time that passed."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import close_old_connections
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from annotation import services
from annotation.models import Annotation, Attempt, InstructionReading, Membership
from core.errors import Conflict, Forbidden
from labor_ledger.models import LedgerEntry, TimeCategory
from tests.factories import UserFactory, add_examples, add_member, make_project

T0 = timezone.now().replace(microsecond=0)


def at(seconds: float):
    return T0 + timedelta(seconds=seconds)


def credited(user) -> Decimal:
    attempts = Attempt.objects.filter(annotator=user).aggregate(s=Sum("active_seconds"))["s"] or Decimal(0)
    readings = InstructionReading.objects.filter(annotator=user).aggregate(s=Sum("active_seconds"))["s"]
    return attempts + (readings or Decimal(0))


def two_claims(project, annotator, now):
    first = services.claim_next(project=project, annotator=annotator, now=now)
    second = services.claim_next(project=project, annotator=annotator, exclude_attempt_ids=[first.pk], now=now)
    return first, second


def test_two_claims_heartbeated_together_share_one_clock(project, examples, annotator):
    first, second = two_claims(project, annotator, at(0))
    for t in range(0, 45, 5):  # both tabs beat every 5 s for 40 s
        for attempt in (first, second):
            services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(t))
    assert credited(annotator) == Decimal("40")  # was 80: each claim counted its own clock


def test_two_claims_and_the_instructions_in_two_projects_share_one_clock(project, examples, annotator, admin_user):
    other = make_project(admin=admin_user, name="Other")
    add_examples(other, ["a text", "another text"])
    add_member(other, user=annotator)
    here = services.claim_next(project=project, annotator=annotator, now=at(0))
    there = services.claim_next(project=other, annotator=annotator, now=at(0))
    for t in range(0, 45, 5):
        services.attempt_heartbeat(attempt_id=here.pk, annotator=annotator, now=at(t))
        services.attempt_heartbeat(attempt_id=there.pk, annotator=annotator, now=at(t))
        services.instructions_heartbeat(project=project, annotator=annotator, now=at(t))
    services.instructions_close(project=project, annotator=annotator, now=at(40))
    assert credited(annotator) == Decimal("40")  # was 120
    assert LedgerEntry.objects.filter(annotator=annotator).aggregate(s=Sum("active_seconds"))["s"] <= Decimal("40")


def test_the_credit_goes_to_the_clock_that_beats_first_and_nothing_is_lost(project, examples, annotator):
    first, second = two_claims(project, annotator, at(0))
    services.attempt_heartbeat(attempt_id=first.pk, annotator=annotator, now=at(0))
    services.attempt_heartbeat(attempt_id=second.pk, annotator=annotator, now=at(0))
    services.attempt_heartbeat(attempt_id=first.pk, annotator=annotator, now=at(5))
    services.attempt_heartbeat(attempt_id=second.pk, annotator=annotator, now=at(8))  # 3 s are new
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.active_seconds, second.active_seconds) == (Decimal("5"), Decimal("3"))


def test_undo_stays_within_the_open_claim_limit(project, examples, annotator, settings):
    shown = services.claim_next(project=project, annotator=annotator, now=at(0))
    services.attempt_heartbeat(attempt_id=shown.pk, annotator=annotator, now=at(0))
    services.annotation_submit(
        attempt_id=shown.pk, annotator=annotator, label_ids=[project.labels.first().pk], now=at(3)
    )
    current, prefetched = two_claims(project, annotator, at(3))
    services.attempt_heartbeat(attempt_id=current.pk, annotator=annotator, now=at(3))
    # when: undo with the text on screen and one prefetched behind it
    again = services.annotation_undo_last(project=project, annotator=annotator, now=at(4))
    # then: the unseen prefetched claim went back to the pool; two claims are open, not three
    open_now = Attempt.objects.filter(annotator=annotator, status=Attempt.Status.CLAIMED)
    assert set(open_now.values_list("pk", flat=True)) == {current.pk, again.pk}
    assert open_now.count() <= settings.TALLY_MAX_OPEN_CLAIMS
    prefetched.refresh_from_db()
    assert prefetched.status == Attempt.Status.EXPIRED and prefetched.active_seconds == 0


def test_undo_with_every_open_claim_on_screen_is_refused(project, examples, annotator):
    done = services.claim_next(project=project, annotator=annotator, now=at(0))
    services.annotation_submit(attempt_id=done.pk, annotator=annotator, label_ids=[project.labels.first().pk])
    first, second = two_claims(project, annotator, at(1))
    for attempt in (first, second):
        services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(1))
    with pytest.raises(Conflict):
        services.annotation_undo_last(project=project, annotator=annotator, now=at(2))
    assert Annotation.objects.get(pk=done.annotation.pk).status == Annotation.Status.ACCEPTED


def test_a_member_demoted_to_auditor_cannot_work_and_their_claim_is_revoked_and_paid(
    project, examples, annotator, admin_user
):
    attempt = services.claim_next(project=project, annotator=annotator, now=at(0))
    services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(0))
    services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(5))
    # when: an admin makes them an auditor
    services.membership_set(project=project, user=annotator, role=Membership.Role.AUDITOR, actor=admin_user, now=at(6))
    # then: the claim is closed as revoked, its time up to the last heartbeat in the ledger
    attempt.refresh_from_db()
    assert (attempt.status, attempt.active_seconds) == (Attempt.Status.REVOKED, Decimal("5"))
    entry = LedgerEntry.objects.get(attempt=attempt)
    assert entry.time_category == TimeCategory.REVOKED and entry.acting_user_id == admin_user.pk
    # and nothing more can be credited, submitted or skipped on it
    for action in (
        lambda: services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(7)),
        lambda: services.annotation_submit(
            attempt_id=attempt.pk, annotator=annotator, label_ids=[project.labels.first().pk], now=at(8)
        ),
        lambda: services.attempt_skip(attempt_id=attempt.pk, annotator=annotator, now=at(9)),
    ):
        with pytest.raises(Forbidden):
            action()
    assert LedgerEntry.objects.filter(attempt=attempt).count() == 1


def test_the_api_answers_403_to_a_demoted_member_holding_a_claim(project, examples, annotator, api):
    client = api(annotator)
    claim = client.post(f"/api/projects/{project.slug}/queue/next/", {}, format="json").json()
    Membership.objects.filter(project=project, user=annotator).update(role=Membership.Role.AUDITOR)
    for verb in ("heartbeat", "skip"):
        answer = client.post(f"/api/attempts/{claim['id']}/{verb}/", {}, format="json")
        assert answer.status_code == 403, answer.content
    answer = client.post(f"/api/attempts/{claim['id']}/submit/", {"labels": [project.labels.first().pk]}, format="json")
    assert answer.status_code == 403 and Annotation.objects.count() == 0


# --- the bound, over any interleaving ---------------------------------------------------------

EVENT = st.tuples(
    st.sampled_from(["beat", "beat", "beat", "submit", "skip", "read", "close"]),
    st.integers(min_value=0, max_value=3),  # which claim (two per project) or which project
    # seconds since the previous event: often none, as when several tabs beat together
    st.sampled_from([0, 0, 0, 1, 3, 5, 12]),
)


@pytest.mark.django_db
@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(EVENT, min_size=1, max_size=40))
def test_credited_time_never_exceeds_wall_time_over_any_interleaving(events):
    admin = UserFactory()
    person = UserFactory()
    projects = [make_project(admin=admin, name=f"P{i}") for i in range(2)]
    for p in projects:
        add_examples(p, [f"{p.slug} text {i}" for i in range(40)])
        add_member(p, user=person)
    label = {p.pk: p.labels.first().pk for p in projects}
    t = 0
    claims: dict[int, Attempt | None] = {}
    for verb, which, step in events:
        t += step
        project = projects[which % 2]
        if verb in ("read", "close"):
            if verb == "read":
                services.instructions_heartbeat(project=project, annotator=person, now=at(t))
            else:
                services.instructions_close(project=project, annotator=person, now=at(t))
            continue
        attempt = claims.get(which)
        if attempt is None or attempt.status != Attempt.Status.CLAIMED:
            held = [a.pk for k, a in claims.items() if a is not None and k % 2 == which % 2 and k != which]
            try:
                attempt = services.claim_next(project=project, annotator=person, exclude_attempt_ids=held, now=at(t))
            except Conflict:
                continue
            claims[which] = attempt
            if attempt is None:
                continue
        try:
            if verb == "beat":
                claims[which] = services.attempt_heartbeat(attempt_id=attempt.pk, annotator=person, now=at(t))
            elif verb == "submit":
                services.annotation_submit(
                    attempt_id=attempt.pk, annotator=person, label_ids=[label[project.pk]], now=at(t)
                )
                claims[which] = None
            else:
                services.attempt_skip(attempt_id=attempt.pk, annotator=person, now=at(t))
                claims[which] = None
        except Conflict:  # expired, or already closed
            claims[which] = None
    for p in projects:
        services.instructions_close(project=p, annotator=person, now=at(t))
    assert credited(person) <= Decimal(t)
    ledger = LedgerEntry.objects.filter(annotator=person).aggregate(s=Sum("active_seconds"))["s"] or Decimal(0)
    assert ledger <= Decimal(t)


# --- the bound, from threads against PostgreSQL -----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_heartbeats_from_several_tabs_never_credit_more_than_wall_time(admin_user):
    project = make_project(admin=admin_user, name="Threads")
    add_examples(project, [f"text {i}" for i in range(10)])
    other = make_project(admin=admin_user, name="Threads 2")
    add_examples(other, [f"other {i}" for i in range(10)])
    person = add_member(project)
    add_member(other, user=person)
    first, second = two_claims(project, person, timezone.now())
    third = services.claim_next(project=other, annotator=person, now=timezone.now())
    start = timezone.now()
    barrier = threading.Barrier(4)
    errors = []

    def tab(beat):
        try:
            barrier.wait(timeout=10)
            for _ in range(15):
                beat()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            close_old_connections()

    beats = [
        lambda a=a: services.attempt_heartbeat(attempt_id=a.pk, annotator=person) for a in (first, second, third)
    ] + [lambda: services.instructions_heartbeat(project=project, annotator=person)]
    threads = [threading.Thread(target=tab, args=(beat,)) for beat in beats]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    end = timezone.now()
    assert not errors, errors
    wall = Decimal((end - start).total_seconds())
    assert credited(person) <= wall
