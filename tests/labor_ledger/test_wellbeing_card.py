"""Wellbeing on the Labor Card and the datasheet (issue 17): a version trained on sensitive
texts shows its exposure by category, the people exposed, the highest daily exposure of one
person and the breaks taken and paid, equal to what the ledger's own rows say."""

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.urls import reverse

from annotation import welfare
from annotation.models import Annotation, SensitiveMark
from labor_ledger import services as ledger_services
from labor_ledger.models import LedgerEntry, TimeCategory
from labor_ledger.reports import card as labor_card
from labor_ledger.reports import datasheet
from tests.factories import UserFactory, add_examples, add_member, make_project
from training.hooks import VersionRegistered, version_registered

from .report_helpers import T0, at, label_text, make_version

TIME_KINDS = {"hourly_pay", "work_time", "unpaid_time"}


@pytest.fixture
def sensitive_version(db):
    cache.clear()
    admin = UserFactory(username="ada-admin")
    project = make_project(admin=admin, name="Harsh")
    ledger_services.pay_policy_create(
        project=project,
        created_by=admin,
        floor_hourly_rate=Decimal("36"),
        effective_from=T0 - timedelta(hours=1),
        now=T0 - timedelta(hours=1),
    )
    a, b = add_member(project, user=UserFactory(username="ann")), add_member(project, user=UserFactory(username="bea"))
    e1, e2, e3, e4 = add_examples(project, ["grim one", "grim two", "calm three", "grim four"])
    welfare.policy_set(project=project, sensitive=True, paid_break_minutes_per_hour=30)
    welfare.marks_set(project=project, example_ids=[e1.pk, e2.pk], categories=["violence"], set_by=admin)
    welfare.marks_set(project=project, example_ids=[e2.pk], categories=["hate"], set_by=admin)
    welfare.marks_set(project=project, example_ids=[e4.pk], categories=["self_harm"], set_by=admin)
    labels = list(project.labels.all())
    label_text(project, a, e1, start=at(0), seconds=20, label=labels[0])
    welfare.break_start(project=project, user=a, now=at(20))
    welfare.break_end(user=a, now=at(80))
    label_text(project, b, e2, start=at(600), seconds=30, skip=True)
    label_text(project, a, e3, start=at(1200), seconds=10, label=labels[1])
    label_text(project, a, e4, start=at(0, days=1), seconds=40, label=labels[0])
    annotations = list(Annotation.objects.filter(project=project))
    version = make_version(project, sequence=1, annotations=annotations, snapshot_at=at(600, days=1))
    version_registered.send(VersionRegistered(version_id=version.pk, project_id=project.pk))
    return project, version, admin


def ledger_figures(project, before):
    """The same figures, straight from the ledger's rows, in Python."""
    marks = defaultdict(set)
    for example_id, category in SensitiveMark.objects.values_list("example_id", "category"):
        marks[example_id].add(category)
    per_category, per_person_day, total = defaultdict(Decimal), defaultdict(Decimal), Decimal(0)
    for e in LedgerEntry.objects.filter(project=project, occurred_at__lt=before, attempt__isnull=False).select_related(
        "attempt"
    ):
        kind = e.reversed_kind if e.kind == "reversal" else e.kind
        if kind not in TIME_KINDS or e.time_category == TimeCategory.BETWEEN_TASKS:
            continue
        categories = marks[e.attempt.example_id]
        if not categories:
            continue
        total += e.active_seconds
        per_person_day[(e.annotator_id, e.occurred_at.date())] += e.active_seconds
        for c in categories:
            per_category[c] += e.active_seconds
    paid = sum(
        (e.counted_seconds for e in LedgerEntry.objects.filter(project=project, time_category=TimeCategory.BREAK)),
        Decimal(0),
    )
    people = len({person for (person, _), s in per_person_day.items() if s > 0})
    return total, dict(per_category), people, max(per_person_day.values()), paid


def hours(seconds) -> float:
    return round(float(seconds) / 3600, 4)


def test_the_card_shows_exposure_equal_to_the_ledger(sensitive_version):
    project, version, _ = sensitive_version
    w = labor_card.build_card(project=project, version=version)["wellbeing"]
    total, per_category, people, highest, paid = ledger_figures(project, version.snapshot_at)
    # by hand: A 20 s (violence) day 0 and 40 s (self-harm) day 1; B skipped 30 s (violence, hate)
    assert (total, people, highest) == (Decimal(90), 2, Decimal(40))
    assert per_category == {"violence": Decimal(50), "hate": Decimal(30), "self_harm": Decimal(40)}
    assert w["exposure_hours"] == hours(total)
    assert {c["category"]: c["hours"] for c in w["exposure_by_category"]} == {
        c: hours(s) for c, s in per_category.items()
    }
    assert w["people_exposed"] == people
    assert w["highest_daily_exposure_hours"] == hours(highest)
    assert w["sensitive_skipped_hours"] == hours(30)
    assert w["breaks_taken"] == 1 and w["break_hours_taken"] == hours(60)
    assert paid == Decimal(10)  # 30 paid minutes per hour worked x 20 s of work
    assert w["break_hours_paid"] == hours(paid)


def test_the_card_page_and_the_datasheet_show_wellbeing(sensitive_version, client):
    project, version, admin = sensitive_version
    client.force_login(admin)
    page = client.get(reverse("labor_card:version", args=[project.slug, version.sequence]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="card-wellbeing"' in html and 'data-category="self_harm"' in html
    sheet = datasheet.datasheet(version=version)
    assert sheet["wellbeing"]["people_exposed"] == 2
    assert "Exposure to sensitive content" in datasheet.to_markdown(sheet)
