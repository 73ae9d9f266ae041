"""Simulated annotators over HTTP (issue 14, "Done when"): people with known think times work
through the REST API in two projects, some with a second tab that heartbeats along, some
reading the instructions, pausing, or leaving a text unattended for a while. The server's
clock is the simulation's (django.utils.timezone.now is driven by the test).

For every person, the ledger's active seconds
- never exceed the wall time they were at work (first to last request), and
- equal the simulation's figure under the heartbeat rule: a text or a reading is credited its
  think time exactly (heartbeats every TALLY_HEARTBEAT_INTERVAL_SECONDS = 5 s, the answer
  credits the rest), a silence longer than TALLY_HEARTBEAT_MAX_GAP_SECONDS = 10 s inside a
  text is credited one interval (5 s) when the heartbeats resume, a second tab adds nothing,
  and pauses between tasks add nothing.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.conf import settings
from django.db.models import Sum
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from annotation.models import Attempt, InstructionReading
from labor_ledger.models import LedgerEntry
from tests.factories import UserFactory, add_examples, add_member, make_project

T0 = datetime(2030, 1, 7, 9, 0, 0, tzinfo=UTC)  # a Monday morning: the whole run stays in one day
INTERVAL = 5
TEXTS_PER_PROJECT = 60

# What a person does next (think and pause times in seconds):
#   ("text", project, think, second_tab, second_tab_beats_first, skip)
#   ("read", project, seconds)                        the instructions open, beating
#   ("stare", project, before, silence, after, rest)  a text left unattended mid-way
#   ("pause", seconds)                                away between tasks: no requests
PROJECT = st.integers(min_value=0, max_value=1)
SEGMENT = st.one_of(
    st.tuples(
        st.just("text"),
        PROJECT,
        st.integers(min_value=1, max_value=45),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    st.tuples(st.just("read"), PROJECT, st.integers(min_value=1, max_value=40)),
    st.tuples(
        st.just("stare"),
        PROJECT,
        st.integers(min_value=1, max_value=4).map(lambda n: n * INTERVAL),
        st.integers(min_value=11, max_value=90),
        st.integers(min_value=0, max_value=3).map(lambda n: n * INTERVAL),
        st.integers(min_value=0, max_value=4),
    ),
    st.tuples(st.just("pause"), st.integers(min_value=11, max_value=600)),
)
PERSON = st.tuples(st.integers(min_value=0, max_value=30), st.lists(SEGMENT, min_size=1, max_size=7))


@dataclass
class Person:
    user: object
    client: APIClient
    expected: int = 0  # active seconds the heartbeat rule owes them
    first: datetime | None = None
    last: datetime | None = None
    tabs: dict = field(default_factory=dict)  # tab name -> attempt id


@dataclass(order=True)
class Request:
    at: datetime
    person: int
    seq: int
    action: tuple = field(compare=False)


def schedule(index: int, start: int, segments: list) -> tuple[list[Request], int]:
    """The person's requests, at simulated times, and the active seconds the rule owes them."""
    out: list[Request] = []
    t = start
    expected = 0

    def at(seconds, *action):
        out.append(Request(T0 + timedelta(seconds=seconds), index, len(out), action))

    for segment in segments:
        kind = segment[0]
        if kind == "pause":
            t += segment[1]
            continue
        if kind == "read":
            _, p, seconds = segment
            for beat in range(0, seconds, INTERVAL):
                at(t + beat, "read", p)
            at(t + seconds, "close", p)
            expected += seconds
            t += seconds
        elif kind == "text":
            _, p, think, second_tab, second_first, skip = segment
            at(t, "claim", p, "main")
            if second_tab:
                at(t, "claim", 1 - p, "other")  # a tab of the other project, open beside it
            for beat in range(0, think + 1, INTERVAL):
                tabs = ["main", "other"] if second_tab else ["main"]
                for tab in reversed(tabs) if second_first else tabs:
                    at(t + beat, "beat", tab)
            at(t + think, "skip" if skip else "submit", "main")
            if second_tab:
                at(t + think, "skip", "other")
            expected += think
            t += think
        else:  # stare: beats for `before`, silence, beats for `after`, answer `rest` s later
            _, p, before, silence, after, rest = segment
            at(t, "claim", p, "main")
            for beat in range(0, before + 1, INTERVAL):
                at(t + beat, "beat", "main")
            resume = t + before + silence
            for beat in range(0, after + 1, INTERVAL):
                at(resume + beat, "beat", "main")
            at(resume + after + rest, "submit", "main")
            # the silence is credited one interval when the heartbeats resume
            expected += before + INTERVAL + after + rest
            t = resume + after + rest
    return out, expected


def perform(person: Person, projects: list, request: Request) -> None:
    client, action = person.client, request.action
    verb = action[0]
    if verb in ("read", "close"):
        project = projects[action[1]]
        path = "heartbeat" if verb == "read" else "close"
        answer = client.post(f"/api/projects/{project.slug}/instructions/{path}/", {}, format="json")
        assert answer.status_code in (200, 204), answer.content
        return
    if verb == "claim":
        _, p, tab = action
        project = projects[p]
        held = list(person.tabs.values())
        answer = client.post(f"/api/projects/{project.slug}/queue/next/", {"exclude": held}, format="json")
        assert answer.status_code == 200, (answer.status_code, answer.content)
        person.tabs[tab] = answer.json()["id"]
        person.tabs[f"{tab}:label"] = project.labels.first().pk
        return
    tab = action[1]
    attempt_id = person.tabs[tab]
    if verb == "beat":
        answer = client.post(f"/api/attempts/{attempt_id}/heartbeat/", {}, format="json")
    elif verb == "submit":
        labels = [person.tabs[f"{tab}:label"]]
        answer = client.post(f"/api/attempts/{attempt_id}/submit/", {"labels": labels}, format="json")
    else:
        answer = client.post(f"/api/attempts/{attempt_id}/skip/", {}, format="json")
    assert answer.status_code in (200, 201), (verb, answer.status_code, answer.content)
    if verb in ("submit", "skip"):
        del person.tabs[tab]
        del person.tabs[f"{tab}:label"]


def ledger_active(user) -> Decimal:
    return LedgerEntry.objects.filter(annotator=user).aggregate(s=Sum("active_seconds"))["s"] or Decimal(0)


@pytest.mark.django_db
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=st.lists(PERSON, min_size=1, max_size=3))
def test_simulated_annotators_over_http_are_credited_what_the_heartbeat_rule_owes_never_more_than_wall_time(
    people,
):
    assert (settings.TALLY_HEARTBEAT_INTERVAL_SECONDS, settings.TALLY_HEARTBEAT_MAX_GAP_SECONDS) == (INTERVAL, 10)
    admin = UserFactory()
    projects = [make_project(admin=admin, name=f"Sim {i}") for i in range(2)]
    for p in projects:
        add_examples(p, [f"{p.slug} text {i}" for i in range(TEXTS_PER_PROJECT)])
    persons: list[Person] = []
    requests: list[Request] = []
    for index, (start, segments) in enumerate(people):
        user = UserFactory()
        for p in projects:
            add_member(p, user=user)
        client = APIClient()
        client.force_authenticate(user)
        own, expected = schedule(index, start, segments)
        persons.append(Person(user=user, client=client, expected=expected))
        requests += own

    clock = [T0]
    with mock.patch("django.utils.timezone.now", lambda: clock[0]):
        for request in sorted(requests):  # every person's requests, interleaved by the clock
            clock[0] = request.at
            person = persons[request.person]
            person.first = person.first or request.at
            person.last = request.at
            perform(person, projects, request)

    for person in persons:
        user = person.user
        assert not Attempt.objects.filter(annotator=user, status=Attempt.Status.CLAIMED).exists()
        assert not InstructionReading.objects.filter(annotator=user, ended_at__isnull=True).exists()
        active = ledger_active(user)
        wall = Decimal((person.last - person.first).total_seconds()) if person.first else Decimal(0)
        # never more than the wall time...
        assert active <= wall, (active, wall)
        # ...and exactly what the heartbeat rule owes for the simulated think times
        assert active == Decimal(person.expected), (active, person.expected, people)
