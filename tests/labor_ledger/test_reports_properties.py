"""Property: whatever happens in a project, every labor report adds up to the ledger.

Hypothesis draws a pay policy and a sequence of work (labels, skips, time between tasks,
undos, rejections and re-acceptances, bonuses, adjustments, settlements) and of model
versions trained on the accepted labels of their moment (some held out, each the child of a
random earlier version or of none). Then, from the database:

* reports by annotator, period and project add up to the ledger's own sums (selectors.TOTALS
  over every entry) and to the balances, also after a round trip through CSV;
* each row of the per-version report equals the ledger's sums over that version's manifest,
  its label count is the manifest's, and its new and dropped labels are the differences with
  its parent's manifest;
* the per-version report (label deltas summed along ancestors) and the report by annotator
  scoped to the version (the manifest joined directly) agree on the wage bill and its lines.
"""

import csv
import io
import os
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotation import services as annotation_services
from annotation.models import Annotation, Attempt, Membership
from core.errors import TallyError
from labor_ledger import selectors, settlement
from labor_ledger import services as ledger_services
from labor_ledger.models import Balance, LedgerEntry
from labor_ledger.reports import build, writers
from tests.factories import UserFactory, add_examples, add_member, make_project
from training.hooks import VersionRegistered, version_registered

from .report_helpers import at, label_text, make_version

D = Decimal
EXAMPLES = int(os.environ.get("LABOR_REPORT_PROPERTY_EXAMPLES", "25"))
who = st.integers(min_value=0, max_value=2)
gap = st.sampled_from([60, 400])  # 60 s after the annotator's last task: time "between tasks"
step = st.one_of(
    st.tuples(st.just("label"), who, st.sampled_from([5, 10, 15, 40]), st.integers(0, 1), gap),
    st.tuples(st.just("label"), who, st.sampled_from([5, 10, 15, 40]), st.integers(0, 1), gap),
    st.tuples(st.just("skip"), who, st.sampled_from([5, 20]), st.just(0), gap),
    st.tuples(st.just("undo"), who),
    st.tuples(st.just("review"), st.integers(0, 40), st.sampled_from(["rejected", "accepted"])),
    st.tuples(
        st.just("money"), who, st.sampled_from(["bonus", "adjustment"]), st.sampled_from(["0.50", "1.25", "-0.30"])
    ),
    st.tuples(st.just("version"), st.integers(0, 40), st.integers(2, 5)),
    st.tuples(st.just("version"), st.integers(0, 40), st.integers(2, 5)),
    st.tuples(
        st.just("settle"),
    ),
)
policies = st.fixed_dictionaries(
    {
        "piece_rate": st.sampled_from([D("0"), D("0.05"), D("0.10")]),
        "hourly_rate": st.sampled_from([D("0"), D("0"), D("6")]),
        "floor_hourly_rate": st.sampled_from([D("0"), D("12"), D("36")]),
        "client_price_per_example": st.sampled_from([None, D("0.25")]),
        "client_price_per_hour": st.sampled_from([None, D("20")]),
    }
)


def ledger_sums(entries) -> dict:
    return entries.aggregate(**{name: make() for name, make in selectors.TOTALS.items()})


class Project:
    """Drives one random project on a clock of its own."""

    def __init__(self, policy: dict):
        self.admin = UserFactory()
        self.project = make_project(admin=self.admin, name="Property", annotations_per_example=3)
        self.examples = add_examples(self.project, [f"property text {i}" for i in range(40)])
        self.place = {e.pk: n for n, e in enumerate(self.examples, start=1)}  # 1, 2, ... as in a fresh database
        self.users = [add_member(self.project, Membership.Role.ANNOTATOR) for _ in range(3)]
        self.labels = list(self.project.labels.order_by("order", "id"))
        self.t = 0.0
        self.versions = []
        ledger_services.pay_policy_create(
            project=self.project,
            created_by=self.admin,
            effective_from=at(-60),
            now=at(-60),
            pay_rejected_work=False,  # the oracle unpays rejected labels
            **policy,
        )

    def tick(self, seconds: float) -> None:
        self.t += seconds

    def next_example(self, user):
        worked = set(Attempt.objects.filter(annotator=user).values_list("example_id", flat=True))
        return next((e for e in self.examples if e.pk not in worked), None)

    def apply(self, action) -> None:
        kind = action[0]
        self.tick(action[4] if kind in ("label", "skip") else 1)
        try:
            if kind in ("label", "skip"):
                user = self.users[action[1]]
                example = self.next_example(user)
                if example is not None:
                    label = self.labels[action[3]] if kind == "label" else None
                    label_text(
                        self.project,
                        user,
                        example,
                        start=at(self.t),
                        seconds=action[2],
                        label=label,
                        skip=kind == "skip",
                    )
                    self.tick(action[2])
            elif kind == "undo":
                annotation_services.annotation_undo_last(
                    project=self.project, annotator=self.users[action[1]], now=at(self.t)
                )
            elif kind == "review":
                human = list(Annotation.objects.filter(project=self.project).order_by("id"))
                if human:
                    annotation_services.annotation_review(
                        annotation=human[action[1] % len(human)], status=action[2], actor=self.admin, now=at(self.t)
                    )
            elif kind == "money":
                amount = D(action[3])
                if action[2] == "bonus":
                    amount = abs(amount)
                ledger_services.manual_entry_create(
                    project=self.project,
                    annotator=self.users[action[1]],
                    kind=action[2],
                    amount=amount,
                    reason="property",
                    actor=self.admin,
                    idempotency_key=f"p{self.t}",
                    now=at(self.t),
                )
            elif kind == "version":
                accepted = list(Annotation.objects.filter(project=self.project, status="accepted").order_by("id"))
                # Held out by the example's place in the project, not its database id: ids
                # depend on how many rows earlier tests made, and so would what is held out.
                trained = [a for a in accepted if self.place[a.example_id] % action[2]]
                parent = self.versions[action[1] % len(self.versions)] if self.versions and action[1] % 3 else None
                version = make_version(
                    self.project,
                    sequence=len(self.versions) + 1,
                    parent=parent,
                    annotations=trained,
                    snapshot_at=at(self.t),
                    accuracy=0.5 + len(self.versions) / 100,
                )
                # registered: the worker indexes it at once (labor_ledger/labor_index.py)
                version_registered.send(VersionRegistered(version_id=version.pk, project_id=version.project_id))
                self.versions.append(version)
            elif kind == "settle":
                self.tick(86400)
                settlement.settle_due(project=self.project, now=at(self.t))
                self.tick(3600)
        except TallyError:
            pass  # refused work (nothing to undo, a label that cannot be accepted again): no entries


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policy=policies, plan=st.lists(step, min_size=1, max_size=14))
@pytest.mark.django_db
def test_every_report_adds_up_to_the_ledger(policy, plan):
    with transaction.atomic():
        run = Project(policy)
        for action in plan:
            run.apply(action)
        check(run)
        transaction.set_rollback(True)  # examples never see each other


def check(run: Project) -> None:
    project = run.project
    everything = ledger_sums(LedgerEntry.objects.filter(project=project))
    balances = Balance.objects.filter(project=project).aggregate(s=Sum("amount"))["s"] or D(0)
    assert everything["pay"] == balances
    for by in ("annotator", "period", "project"):
        report = build.labor_report(project=project, by=by)
        totals = report.totals
        for ours, theirs in (
            ("pay", "pay"),
            ("active_seconds", "active"),
            ("wall_seconds", "wall"),
            ("counted_seconds", "counted"),
            ("client_amount", "client"),
            ("floor_amount", "floor"),
            ("piece_pay", "piece_pay"),
            ("hourly_pay", "hourly_pay"),
            ("floor_top_up", "floor_top_up"),
            ("bonus", "bonus"),
            ("adjustment", "adjustment"),
            ("examples", "examples"),
            ("entries", "entries"),
        ):
            assert totals[ours] == everything[theirs], (by, ours)
        rows = list(csv.DictReader(io.StringIO(writers.to_csv(report).decode())))
        assert sum((D(r["pay"]) for r in rows), D(0)) == everything["pay"]
        assert sum((D(r["active_seconds"]) for r in rows), D(0)) == everything["active"]

    rows = {int(r["version"]): r for r in build.labor_report(project=project, by="version").frame.to_dict("records")}
    assert set(rows) == {v.sequence for v in run.versions}
    for version in run.versions:
        row = rows[version.sequence]
        manifest = set(version.manifest.values_list("annotation_id", flat=True))
        on_labels = ledger_sums(LedgerEntry.objects.filter(project=project, annotation_id__in=manifest))
        assert row["labels"] == len(manifest)
        assert row["direct_pay"] == on_labels["pay"]
        assert row["piece_pay"] == on_labels["piece_pay"]
        assert row["hourly_pay"] == on_labels["hourly_pay"]
        assert row["active_seconds"] == on_labels["active"]
        assert row["wall_seconds"] == on_labels["wall"]
        assert row["counted_seconds"] == on_labels["counted"]
        assert row["client_amount"] == on_labels["client"]
        assert row["floor_amount"] == on_labels["floor"]
        assert row["examples"] == on_labels["examples"]
        parent = set(version.parent.manifest.values_list("annotation_id", flat=True)) if version.parent else set()
        assert (row["new_labels"], row["dropped_labels"]) == (len(manifest - parent), len(parent - manifest))
        new = ledger_sums(LedgerEntry.objects.filter(project=project, annotation_id__in=manifest - parent))
        assert row["new_active_seconds"] == new["active"]
        scoped = build.labor_report(project=project, by="annotator", version=version.sequence).frame
        for column in ("pay", "direct_pay", "floor_top_up", "bonus", "adjustment", "allocated_pay", "counted_seconds"):
            assert sum(scoped[column].tolist(), D(0)) == row[column], (version.sequence, column)


def test_the_property_reaches_interesting_ledgers(db):
    """The property is only as good as the ledgers it sees: one fixed plan reaches top-ups,
    reversals, bonuses, time between tasks, branches and dropped labels."""
    with transaction.atomic():
        run = Project(
            {
                "piece_rate": D("0.05"),
                "hourly_rate": D("6"),
                "floor_hourly_rate": D("36"),
                "client_price_per_example": D("0.25"),
                "client_price_per_hour": D("20"),
            }
        )
        plan = [
            ("label", 0, 40, 0, 400),
            ("label", 0, 10, 1, 60),
            ("version", 0, 5),
            ("label", 1, 15, 1, 400),
            ("skip", 2, 20, 0, 400),
            ("review", 0, "rejected"),
            ("version", 1, 3),
            ("money", 1, "bonus", "1.25"),
            ("undo", 0),
            ("version", 1, 5),
            ("settle",),
        ]
        for action in plan:
            run.apply(action)
        kinds = set(LedgerEntry.objects.filter(project=run.project).values_list("kind", flat=True))
        assert {"floor_top_up", "reversal", "bonus", "hourly_pay"} <= kinds
        assert LedgerEntry.objects.filter(project=run.project, time_category="between_tasks").exists()
        rows = {
            int(r["version"]): r for r in build.labor_report(project=run.project, by="version").frame.to_dict("records")
        }
        assert rows[3]["parent_version"] == 2 and rows[2]["dropped_labels"] >= 1
        check(run)
        transaction.set_rollback(True)


def test_time_between_tasks_is_recorded_but_never_embodied(db):
    with transaction.atomic():
        run = Project({"piece_rate": D("0.05")})
        for action in [("version", 0, 5), ("label", 0, 10, 0, 400), ("label", 0, 10, 0, 60), ("version", 1, 99)]:
            run.apply(action)
        between = LedgerEntry.objects.get(project=run.project, time_category="between_tasks")
        assert between.annotation_id is None and between.wall_seconds > 0
        rows = {
            int(r["version"]): r for r in build.labor_report(project=run.project, by="version").frame.to_dict("records")
        }
        assert rows[2]["wall_seconds"] == D("20")  # the two labels' own wall time only
        assert rows[2]["between_tasks_wall_seconds"] == between.wall_seconds
        transaction.set_rollback(True)


def test_a_version_trained_after_a_settlement_counts_late_entries(db):
    with transaction.atomic():
        run = Project({"piece_rate": D("0.05"), "floor_hourly_rate": D("36")})
        for action in [("label", 0, 40, 0, 400), ("settle",), ("review", 0, "rejected"), ("version", 0, 99)]:
            run.apply(action)
        row = build.labor_report(project=run.project, by="version").frame.iloc[0]
        assert row["labels"] == 0 and row["rejected_active_seconds"] == D("40")
        transaction.set_rollback(True)


def test_plan_clock_is_monotonic():
    run = object.__new__(Project)
    run.t, run.versions = 0.0, []
    run.tick(5)
    assert at(run.t) - at(0) == timedelta(seconds=5)
