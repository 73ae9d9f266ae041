"""Annotator welfare (issue 17): sensitive marks, exposure limits at claim time across
projects and tabs, opt-outs, sensitive skips paid as time worked, breaks on the one clock."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from annotation import services, welfare
from annotation.models import Attempt, Break, Membership, SensitiveMark
from labor_ledger import services as ledger_services
from labor_ledger.models import LedgerEntry, TimeCategory
from tests.annotation.import_helpers import run_import
from tests.factories import UserFactory, add_examples, add_member, make_project

T0 = timezone.now().replace(hour=9, minute=0, second=0, microsecond=0)


def at(minutes: float):
    return T0 + timedelta(minutes=minutes)


def sensitive_project(admin, name, *, n_sensitive=5, n_plain=0, **limits):
    project = make_project(admin=admin, name=name)
    marked = add_examples(project, [f"{name} hard text {i}" for i in range(n_sensitive)])
    add_examples(project, [f"{name} plain text {i}" for i in range(n_plain)])
    welfare.policy_set(project=project, sensitive=True, **limits)
    welfare.marks_set(project=project, example_ids=[e.pk for e in marked], categories=["violence"], set_by=admin)
    return project


def is_marked(attempt) -> bool:
    return SensitiveMark.objects.filter(example_id=attempt.example_id).exists()


def claim_and_skip(project, annotator, now):
    attempt = services.claim_next(project=project, annotator=annotator, now=now)
    if attempt is not None:
        services.attempt_skip(attempt_id=attempt.pk, annotator=annotator, now=now)
    return attempt


# --- marks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("violence, self-harm", ["violence", "self_harm"]),
        ("HATE|sexual", ["hate", "sexual"]),
        ("yes", ["other"]),
        ("", []),
        ("0", []),
        (True, ["other"]),
        (["violence", "gore"], ["violence", "other"]),
        (None, []),
    ],
)
def test_import_values_name_categories(value, expected):
    assert welfare.parse_import_value(value) == expected


def test_marks_record_who_set_them_and_declare_the_project_sensitive(project, examples, admin_user):
    added = welfare.marks_set(
        project=project, example_ids=[examples[0].pk], categories=["hate", "violence"], set_by=admin_user
    )
    assert added == 2
    mark = SensitiveMark.objects.get(example=examples[0], category="hate")
    assert (mark.source, mark.set_by) == ("admin", admin_user)
    assert welfare.policy_of(project).sensitive


def test_a_word_list_marks_whole_words_on_demand(project, admin_user):
    texts = add_examples(project, ["He drew a knife.", "Knifed? no: knifeless", "A calm day."])
    welfare.policy_set(project=project, word_list={"violence": ["knife"]})
    assert welfare.word_list_apply(project=project) == 1
    assert list(SensitiveMark.objects.values_list("example_id", "source")) == [(texts[0].pk, "word_list")]


def test_unknown_categories_are_a_clear_400(project, examples, admin_user):
    with pytest.raises(welfare.ValidationFailed, match="unknown categories gore"):
        welfare.marks_set(project=project, example_ids=[examples[0].pk], categories=["gore"], set_by=admin_user)


# --- limits --------------------------------------------------------------------------------------


def test_session_limit_hands_plain_work_then_refuses_with_the_time(admin_user):
    project = sensitive_project(admin_user, "Harsh", n_sensitive=5, n_plain=1, max_texts_per_session=2)
    annotator = add_member(project)
    got = [claim_and_skip(project, annotator, at(i)) for i in range(3)]
    assert [is_marked(a) for a in got] == [True, True, False]  # the third is the plain text
    with pytest.raises(welfare.ExposureLimitReached, match="continue with non-sensitive work") as exc:
        services.claim_next(project=project, annotator=annotator, now=at(4))
    assert exc.value.code == "exposure_limit"
    # after a pause longer than the session gap (15 min by default) a new session begins
    assert is_marked(claim_and_skip(project, annotator, at(4 + 16)))


def test_limits_count_every_project(admin_user):
    first = sensitive_project(admin_user, "First", max_texts_per_session=3)
    second = sensitive_project(admin_user, "Second", max_texts_per_session=3)
    annotator = add_member(first)
    add_member(second, user=annotator)
    claim_and_skip(first, annotator, at(0))
    claim_and_skip(first, annotator, at(1))
    claim_and_skip(second, annotator, at(2))
    with pytest.raises(welfare.ExposureLimitReached):
        services.claim_next(project=second, annotator=annotator, now=at(3))
    with pytest.raises(welfare.ExposureLimitReached):
        services.claim_next(project=first, annotator=annotator, now=at(3))


def test_the_daily_limit_says_tomorrow(admin_user):
    project = sensitive_project(admin_user, "Daily", max_texts_per_day=1, max_texts_per_session=0)
    annotator = add_member(project)
    claim_and_skip(project, annotator, at(0))
    with pytest.raises(welfare.ExposureLimitReached, match="tomorrow at"):
        services.claim_next(project=project, annotator=annotator, now=at(120))


def test_minutes_of_exposure_are_limited(admin_user):
    project = sensitive_project(admin_user, "Minutes", max_minutes_per_session=1, max_texts_per_session=0)
    annotator = add_member(project)
    attempt = services.claim_next(project=project, annotator=annotator, now=at(0))
    for s in range(0, 70, 5):
        services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(s / 60))
    services.attempt_skip(attempt_id=attempt.pk, annotator=annotator, now=at(70 / 60))
    with pytest.raises(welfare.ExposureLimitReached):
        services.claim_next(project=project, annotator=annotator, now=at(2))


def test_a_project_that_is_not_sensitive_has_no_gate(project, examples, annotator):
    assert welfare.claim_gate(project=project, annotator=annotator, now=at(0)) is None
    assert services.claim_next(project=project, annotator=annotator, now=at(0)) is not None


# --- opt-outs -------------------------------------------------------------------------------------


def test_declined_categories_are_not_handed_out_and_nothing_else_changes(admin_user):
    project = sensitive_project(admin_user, "Optout", n_sensitive=2, n_plain=1)
    annotator = add_member(project)
    welfare.opt_outs_set(user=annotator, categories=["violence"])
    first = claim_and_skip(project, annotator, at(0))
    assert not is_marked(first)
    assert services.claim_next(project=project, annotator=annotator, now=at(1)) is None  # only declined left
    assert Membership.objects.get(project=project, user=annotator).role == Membership.Role.ANNOTATOR


def test_declining_a_project_declines_its_sensitive_texts_only(admin_user):
    project = sensitive_project(admin_user, "Declined", n_sensitive=1, n_plain=1)
    annotator = add_member(project)
    welfare.opt_outs_set(user=annotator, projects=[project])
    assert not is_marked(claim_and_skip(project, annotator, at(0)))
    assert services.claim_next(project=project, annotator=annotator, now=at(1)) is None


# --- the ledger: sensitive skips and breaks ----------------------------------------------------


def test_a_sensitive_skip_is_paid_as_time_worked_even_where_skips_are_not(admin_user):
    project = sensitive_project(admin_user, "Paid", n_sensitive=1)
    ledger_services.pay_policy_create(
        project=project,
        created_by=admin_user,
        floor_hourly_rate=Decimal("12"),
        floor_categories=[TimeCategory.SUBMITTED],
        effective_from=at(-1),
        now=at(-1),
    )
    annotator = add_member(project)
    attempt = services.claim_next(project=project, annotator=annotator, now=at(0))
    for s in range(0, 35, 5):
        services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(s / 60))
    services.attempt_skip(attempt_id=attempt.pk, annotator=annotator, now=at(0.5))
    entry = LedgerEntry.objects.get(attempt=attempt)
    assert entry.time_category == TimeCategory.SENSITIVE_SKIPPED
    assert entry.counted_seconds == Decimal("30") and entry.floor_amount > 0


def test_a_break_is_credited_on_the_one_clock_and_its_paid_part_booked(admin_user):
    project = sensitive_project(admin_user, "Breaks", n_sensitive=0, n_plain=3, paid_break_minutes_per_hour=10)
    annotator = add_member(project)
    attempt = services.claim_next(project=project, annotator=annotator, now=at(0))
    for s in range(0, 60 * 30 + 1, 5):  # 30 minutes of work
        services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=at(s / 60))
    services.attempt_skip(attempt_id=attempt.pk, annotator=annotator, now=at(30))
    welfare.break_start(project=project, user=annotator, now=at(30))
    welfare.break_start(project=project, user=annotator, now=at(31))  # idempotent
    brk = welfare.break_end(user=annotator, now=at(40))
    assert brk.credited_seconds == Decimal("600")
    assert brk.paid_seconds == Decimal("300")  # 10 min per hour worked x 0.5 h
    entry = LedgerEntry.objects.get(time_category=TimeCategory.BREAK)
    assert entry.counted_seconds == Decimal("300")
    # the clock moved past the break: time credited never exceeds wall time
    later = services.claim_next(project=project, annotator=annotator, now=at(40))
    services.attempt_heartbeat(attempt_id=later.pk, annotator=annotator, now=at(40))
    with pytest.raises(welfare.Conflict):
        welfare.break_end(user=annotator, now=at(41))
    assert Break.objects.count() == 1


# --- concurrency: the limits cannot be raced past ---------------------------------------------


def _in_threads(fns):
    barrier = threading.Barrier(len(fns))
    errors = []

    def worker(fn):
        try:
            barrier.wait()
            fn()
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL locking")
@pytest.mark.django_db(transaction=True)
@hypothesis_settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    limit=st.integers(min_value=1, max_value=4),
    tabs=st.integers(min_value=2, max_value=4),
    claims_per_tab=st.integers(min_value=2, max_value=4),
    projects=st.integers(min_value=1, max_value=3),
)
def test_interleaved_claims_from_threads_never_exceed_the_limit(limit, tabs, claims_per_tab, projects):
    admin = UserFactory()
    suffix = UserFactory().pk
    pool = [
        sensitive_project(admin, f"P{suffix}-{p}", n_sensitive=8, max_texts_per_session=limit) for p in range(projects)
    ]
    annotator = UserFactory()
    for project in pool:
        add_member(project, user=annotator)

    def tab(i):
        def run():
            for k in range(claims_per_tab):
                project = pool[(i + k) % len(pool)]
                try:
                    attempt = services.claim_next(project=project, annotator=annotator)
                except welfare.ExposureLimitReached:
                    continue
                except welfare.Conflict:  # too many open claims in that project: skip them
                    continue
                if attempt is not None:
                    services.attempt_skip(attempt_id=attempt.pk, annotator=annotator)

        return run

    _in_threads([tab(i) for i in range(tabs)])
    claimed = Attempt.objects.filter(annotator=annotator)
    assert 1 <= claimed.count() <= limit
    assert connection.vendor == "postgresql"


# --- marks at import -------------------------------------------------------------------------


def test_an_import_column_and_the_word_list_mark_texts_with_the_rows(project, admin_user):
    welfare.policy_set(project=project, word_list={"hate": ["slur"]})
    content = (
        b'text,content_warnings\na calm day,\na violent night,"violence, self-harm"\na slur here,\nsomething else,yes\n'
    )
    batch = run_import(project, content, text_column="text")
    assert batch.rows_imported == 4
    marks = set(SensitiveMark.objects.values_list("example__text", "category", "source"))
    assert marks == {
        ("a violent night", "violence", "import"),
        ("a violent night", "self_harm", "import"),
        ("a slur here", "hate", "word_list"),
        ("something else", "other", "import"),
    }
    assert welfare.policy_of(project).sensitive
