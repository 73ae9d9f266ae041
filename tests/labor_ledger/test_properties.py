"""Property-based test of the whole ledger (issue 4, "Done when").

A hypothesis state machine drives random sequences of claims, heartbeats, submissions,
retries with the same idempotency key, skips, expiries, undos, rejections and re-acceptances,
instruction reading, bonuses, pay policy changes and settlements, on a clock it advances
itself (annotation.services' `now=`). After every step it checks, from the database:

* every balance equals the sum of its entries, and every settled period's entries sum to
  what the settlement paid;
* every accepted human annotation is paid exactly once net (one live piece_pay entry, net
  units 1); every other annotation zero times;
* every finished attempt has exactly one live time entry, in the category that says what
  became of it, and its entries add up to the attempt's own active seconds;
* every time entry counts the seconds its policy says count (clock and categories);
* no annotator's settled pay falls below the floor: payable >= sum over the period's entries
  of floor rate x counted hours, recomputed from the policy table;
* the hash chain, balances and settlements verify.
"""

import itertools
import os
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from annotation import services as annotation_services
from annotation.models import Annotation, Attempt, Example, Membership
from core.errors import TallyError
from labor_ledger import money, selectors, services, settlement
from labor_ledger.models import Balance, Clock, LedgerEntry, PayPolicy, Settlement, TimeCategory
from tests.factories import UserFactory, add_examples, add_member, make_project

Kind = LedgerEntry.Kind
START = datetime(2030, 3, 4, 22, 0, tzinfo=UTC)  # two hours before a period boundary
ANNOTATORS = 3
REACHED = Counter()  # how many runs reached each interesting state

rates = st.sampled_from([Decimal("0"), Decimal("0.05"), Decimal("0.10"), Decimal("0.333333")])
hourly_rates = st.sampled_from([Decimal("0"), Decimal("0"), Decimal("6"), Decimal("9.5")])
floors = st.sampled_from([Decimal("0"), Decimal("7.25"), Decimal("12"), Decimal("30")])
clocks = st.sampled_from([Clock.ACTIVE, Clock.WALL])
categories = st.one_of(
    st.none(), st.lists(st.sampled_from(TimeCategory.values), unique=True, max_size=len(TimeCategory.values))
)
annotator_index = st.integers(min_value=0, max_value=ANNOTATORS - 1)
pick = st.integers(min_value=0, max_value=10_000)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        # Every run in its own savepoint, rolled back in teardown: runs never see each other.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.now = START
        self.admin = UserFactory()
        self.project = make_project(admin=self.admin, name="Property", annotations_per_example=2)
        examples = add_examples(self.project, [f"property text {i}" for i in range(14)])
        gold = self.project.labels.first()
        Example.objects.filter(pk__in=[e.pk for e in examples[::3]]).update(gold_label=gold)
        self.users = [add_member(self.project, Membership.Role.ANNOTATOR) for _ in range(ANNOTATORS)]
        self.labels = list(self.project.labels.all())
        self.submitted = []  # (user index, attempt id, idempotency key, annotation id)
        self.keys = itertools.count()
        self._policy(piece=Decimal("0.10"), hourly=Decimal("0"), floor=Decimal("12"))

    def teardown(self):
        # What this run reached (hypothesis --hypothesis-show-statistics lists it).
        kinds = set(LedgerEntry.objects.filter(project=self.project).values_list("kind", flat=True))
        lines = set(LedgerEntry.objects.filter(project=self.project).values_list("reversed_kind", flat=True))
        event(f"entry kinds: {len(kinds)}")
        for name, reached in [
            ("settled", Settlement.objects.filter(project=self.project).exists()),
            ("floor top-up", Kind.FLOOR_TOP_UP in kinds),
            ("piece pay reversed", Kind.PIECE_PAY in lines),
            (
                "re-accepted",
                LedgerEntry.objects.filter(project=self.project, idempotency_key__contains=":piece:2").exists(),
            ),
            ("hourly pay", Kind.HOURLY_PAY in kinds),
        ]:
            event(f"reached {name}: {reached}")
            REACHED[name] += int(reached)
        REACHED["runs"] += 1
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- helpers ---

    def _policy(self, **kw):
        services.pay_policy_create(
            project=self.project,
            created_by=self.admin,
            effective_from=self.now,
            now=self.now,
            piece_rate=kw["piece"],
            hourly_rate=kw["hourly"],
            floor_hourly_rate=kw["floor"],
            gold_piece_rate=kw.get("gold"),
            overlap_piece_rate=kw.get("overlap"),
            hourly_clock=kw.get("hourly_clock", Clock.ACTIVE),
            floor_clock=kw.get("floor_clock", Clock.ACTIVE),
            floor_categories=kw.get("floor_categories"),
            hourly_categories=kw.get("hourly_categories"),
            pay_rejected_work=False,  # the model below unpays rejected labels
        )

    def _open(self, who):
        return list(
            Attempt.objects.filter(
                project=self.project,
                annotator=self.users[who],
                status=Attempt.Status.CLAIMED,
                lease_expires_at__gt=self.now,
            ).order_by("id")
        )

    def _tick(self, seconds=1):
        self.now += timedelta(seconds=seconds)

    # --- rules: the annotators' work ---

    @rule(who=annotator_index, show=st.booleans())
    def claim(self, who, show):
        held = [a.pk for a in self._open(who)]
        try:
            attempt = annotation_services.claim_next(
                project=self.project, annotator=self.users[who], exclude_attempt_ids=held, now=self.now
            )
        except TallyError:
            return
        if attempt is not None and show:
            annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=self.users[who], now=self.now)

    @rule(
        who=annotator_index,
        active=st.sampled_from([0, 5, 20, 60, 240]),
        label=pick,
        outcome=st.sampled_from(["submit", "submit", "submit", "skip", "abandon"]),
    )
    def work_one_text(self, who, active, label, outcome):
        """A whole task in one step: claim, show, heartbeats every 5 s, then submit, skip or walk away."""
        self._work(who, active, label, outcome)

    @rule(who=annotator_index, n=st.integers(min_value=2, max_value=4), active=st.sampled_from([5, 30, 120]))
    def work_a_run_of_texts(self, who, n, active):
        for k in range(n):
            self._work(who, active, k, "submit")

    def _work(self, who, active, label, outcome):
        user = self.users[who]
        held = [a.pk for a in self._open(who)]
        try:
            attempt = annotation_services.claim_next(
                project=self.project, annotator=user, exclude_attempt_ids=held, now=self.now
            )
        except TallyError:
            return
        if attempt is None:
            return
        annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=user, now=self.now)
        for _ in range(active // 5):
            self._tick(5)
            annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=user, now=self.now)
        self._tick(2)
        if outcome == "skip":
            annotation_services.attempt_skip(attempt_id=attempt.pk, annotator=user, now=self.now)
        elif outcome == "submit":
            key = f"key-{attempt.pk}"
            annotation = annotation_services.annotation_submit(
                attempt_id=attempt.pk,
                annotator=user,
                label_ids=[self.labels[label % 2].pk],
                idempotency_key=key,
                now=self.now,
            )
            self.submitted.append((who, attempt.pk, key, annotation.pk))

    @rule(who=annotator_index, i=pick)
    def heartbeat(self, who, i):
        held = self._open(who)
        if held:
            try:
                annotation_services.attempt_heartbeat(
                    attempt_id=held[i % len(held)].pk, annotator=self.users[who], now=self.now
                )
            except TallyError:
                pass

    @rule(seconds=st.sampled_from([1, 2, 4, 5, 7, 11, 25, 90, 700, 3 * 3600, 26 * 3600]))
    def advance_clock(self, seconds):
        self._tick(seconds)

    @rule(who=annotator_index, i=pick, label=pick)
    def submit(self, who, i, label):
        held = self._open(who)
        if not held:
            return
        attempt = held[i % len(held)]
        key = f"key-{attempt.pk}"
        try:
            annotation = annotation_services.annotation_submit(
                attempt_id=attempt.pk,
                annotator=self.users[who],
                label_ids=[self.labels[label % 2].pk],
                idempotency_key=key,
                now=self.now,
            )
        except TallyError:
            return
        self.submitted.append((who, attempt.pk, key, annotation.pk))

    @precondition(lambda self: self.submitted)
    @rule(i=pick)
    def retry_with_the_same_key(self, i):
        who, attempt_id, key, annotation_id = self.submitted[i % len(self.submitted)]
        again = annotation_services.annotation_submit(
            attempt_id=attempt_id,
            annotator=self.users[who],
            label_ids=[self.labels[0].pk],
            idempotency_key=key,
            now=self.now,
        )
        assert again.pk == annotation_id

    @rule(who=annotator_index, i=pick)
    def skip(self, who, i):
        held = self._open(who)
        if held:
            annotation_services.attempt_skip(attempt_id=held[i % len(held)].pk, annotator=self.users[who], now=self.now)

    @rule(who=annotator_index)
    def undo(self, who):
        try:
            annotation_services.annotation_undo_last(project=self.project, annotator=self.users[who], now=self.now)
        except TallyError:
            pass

    @rule(who=annotator_index, beats=st.integers(min_value=1, max_value=4), close=st.booleans())
    def read_instructions(self, who, beats, close):
        for _ in range(beats):
            annotation_services.instructions_heartbeat(project=self.project, annotator=self.users[who], now=self.now)
            self._tick(5)
        if close:
            annotation_services.instructions_close(project=self.project, annotator=self.users[who], now=self.now)

    # --- rules: admins ---

    @precondition(lambda self: self.submitted)
    @rule(i=pick, status=st.sampled_from([Annotation.Status.REJECTED, Annotation.Status.ACCEPTED]))
    def review(self, i, status):
        annotation = Annotation.objects.get(pk=self.submitted[i % len(self.submitted)][3])
        try:
            annotation_services.annotation_review(annotation=annotation, status=status, actor=self.admin, now=self.now)
        except TallyError:
            pass

    @precondition(lambda self: Annotation.objects.filter(project=self.project, status="rejected").exists())
    @rule(i=pick)
    def reaccept(self, i):
        rejected = list(Annotation.objects.filter(project=self.project, status="rejected").order_by("pk"))
        try:
            annotation_services.annotation_review(
                annotation=rejected[i % len(rejected)],
                status=Annotation.Status.ACCEPTED,
                actor=self.admin,
                now=self.now,
            )
        except TallyError:
            pass

    @rule(who=annotator_index, cents=st.integers(min_value=1, max_value=500))
    def bonus(self, who, cents):
        services.manual_entry_create(
            project=self.project,
            annotator=self.users[who],
            kind=Kind.BONUS,
            amount=Decimal(cents) / 100,
            reason="property bonus",
            actor=self.admin,
            idempotency_key=f"bonus-{next(self.keys)}",
            now=self.now,
        )

    @rule(
        piece=rates,
        hourly=hourly_rates,
        floor=floors,
        gold=st.one_of(st.none(), rates),
        overlap=st.one_of(st.none(), rates),
        hourly_clock=clocks,
        floor_clock=clocks,
        floor_categories=categories,
        hourly_categories=categories,
    )
    def change_policy(self, **terms):
        self._tick(1)  # a new version starts strictly after the last one
        self._policy(**terms)

    @rule()
    def settle(self):
        settlement.settle_due(project=self.project, now=self.now)

    @rule(minutes=st.integers(min_value=0, max_value=90))
    def settle_after_midnight(self, minutes):
        """The periodic task running shortly after a period ends."""
        tomorrow = (self.now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        self.now = tomorrow + timedelta(minutes=minutes)
        settlement.settle_due(project=self.project, now=self.now)

    # --- invariants: one read of the books per step, then every check on it ---

    @invariant()
    def the_books_are_consistent(self):
        entries = list(
            LedgerEntry.objects.filter(project=self.project).values(
                "pk",
                "annotator_id",
                "period_start",
                "kind",
                "time_category",
                "attempt_id",
                "annotation_id",
                "reversed_by",
                "units",
                "amount",
                "active_seconds",
                "wall_seconds",
                "counted_seconds",
                "floor_amount",
                "policy_id",
            )
        )
        policies = {p.pk: p for p in PayPolicy.objects.filter(project=self.project)}
        settlements = list(Settlement.objects.filter(project=self.project))
        self.check_balances(entries, settlements)
        self.check_each_accepted_annotation_is_paid_once(entries)
        self.check_each_finished_attempt_has_one_live_time_entry(entries)
        self.check_time_counts_as_its_policy_says(entries, policies)
        self.check_nobody_is_settled_below_the_floor(entries, policies, settlements)
        result = selectors.ledger_verify(project=self.project)
        assert result.ok, result.problems

    def check_balances(self, entries, settlements):
        """Every balance equals the sum of its entries; a settled period's entries sum to its payable."""
        sums, by_period = defaultdict(Decimal), defaultdict(Decimal)
        for e in entries:
            sums[e["annotator_id"]] += e["amount"]
            by_period[(e["annotator_id"], e["period_start"])] += e["amount"]
        balances = dict(Balance.objects.filter(project=self.project).values_list("annotator", "amount"))
        assert dict(sums) == balances
        for s in settlements:
            assert by_period[(s.annotator_id, s.period)] == s.payable

    def check_each_accepted_annotation_is_paid_once(self, entries):
        units, live = defaultdict(int), defaultdict(int)
        for e in entries:
            if e["annotation_id"] is not None:
                units[e["annotation_id"]] += e["units"]
                live[e["annotation_id"]] += e["kind"] == Kind.PIECE_PAY and e["reversed_by"] is None
        for annotation_id, status in Annotation.objects.filter(project=self.project).values_list("id", "status"):
            expected = 1 if status == Annotation.Status.ACCEPTED else 0
            assert (units[annotation_id], live[annotation_id]) == (expected, expected), (annotation_id, status)

    def check_each_finished_attempt_has_one_live_time_entry(self, entries):
        live, seconds = defaultdict(list), defaultdict(Decimal)
        for e in entries:
            if e["attempt_id"] is None or e["time_category"] in ("", TimeCategory.BETWEEN_TASKS):
                continue
            seconds[e["attempt_id"]] += e["active_seconds"]
            if e["kind"] != Kind.REVERSAL and e["reversed_by"] is None:
                live[e["attempt_id"]].append(e["time_category"])
        finished = Attempt.objects.filter(project=self.project).exclude(status=Attempt.Status.CLAIMED)
        for pk, status, active, label_status in finished.values_list(
            "pk", "status", "active_seconds", "annotation__status"
        ):
            expected = {Attempt.Status.SKIPPED: "skipped", Attempt.Status.EXPIRED: "expired"}.get(status) or {
                Annotation.Status.ACCEPTED: "submitted",
                Annotation.Status.RETRACTED: "retracted",
                Annotation.Status.REJECTED: "rejected",
            }[label_status]
            assert live[pk] == [expected], (pk, status, live[pk])
            assert seconds[pk] == active

    def check_time_counts_as_its_policy_says(self, entries, policies):
        for e in entries:
            if e["time_category"] == "" or e["kind"] == Kind.REVERSAL:
                continue
            p = policies[e["policy_id"]]
            clock = e["wall_seconds"] if p.floor_clock == Clock.WALL else e["active_seconds"]
            assert e["counted_seconds"] == (clock if e["time_category"] in p.floor_categories else 0)
            assert e["floor_amount"] == money.hourly(p.floor_hourly_rate, e["counted_seconds"])

    def check_nobody_is_settled_below_the_floor(self, entries, policies, settlements):
        """payable >= the floor owed for the period, recomputed from the policy table; so the
        settled pay per hour worked is at least the (time-weighted) floor rate."""
        owed, hours = defaultdict(Decimal), defaultdict(Decimal)
        for e in entries:
            if e["policy_id"] is not None:
                key = (e["annotator_id"], e["period_start"])
                owed[key] += money.hourly(policies[e["policy_id"]].floor_hourly_rate, e["counted_seconds"])
                hours[key] += e["counted_seconds"] / 3600
        for s in settlements:
            key = (s.annotator_id, s.period)
            floor = max(owed[key], Decimal(0))
            assert s.payable >= floor, (s.period, s.payable, floor)
            assert s.payable >= 0
            if hours[key] > 0:
                assert s.payable / hours[key] >= floor / hours[key]


@pytest.mark.django_db
def test_ledger_state_machine():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=int(os.environ.get("LEDGER_PROPERTY_EXAMPLES", 15)),
            stateful_step_count=35,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    print(f"ledger state machine reached: {dict(REACHED)}")  # noqa: T201 - shown with pytest -s
