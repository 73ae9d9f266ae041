"""Who sees what: the annotator's own earnings, the project ledger for admins and auditors,
pay policies set by admins only, no-store on every pay answer, no pay in task payloads."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.models import Annotation, Membership
from labor_ledger import services
from labor_ledger.models import LedgerEntry, PayPolicy
from tests.factories import UserFactory, add_examples, add_member, make_project
from tests.support.annotators import work

Kind = LedgerEntry.Kind


@pytest.fixture
def live_policy(project, admin_user):
    an_hour_ago = timezone.now() - timedelta(hours=1)
    return services.pay_policy_create(
        project=project,
        created_by=admin_user,
        piece_rate=Decimal("0.10"),
        floor_hourly_rate=Decimal("12"),
        client_price_per_example=Decimal("0.25"),
        effective_from=an_hour_ago,
        now=an_hour_ago,
    )


@pytest.fixture
def worked(project, examples, annotator, live_policy):
    """ann and bea each label a text today (real clock: the API reads timezone.now())."""
    bea = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="bea"))
    now = timezone.now()
    start = max(now - timedelta(seconds=60), now.replace(hour=0, minute=0, second=0, microsecond=0))
    _, ann_label = work(project, annotator, start=start, active_seconds=20)
    _, bea_label = work(project, bea, start=start, active_seconds=30)
    return {"ann": ann_label, "bea": bea_label, "bea_user": bea}


def url(name, project, **kwargs):
    return reverse(f"labor_ledger:{name}", kwargs={"slug": project.slug, **kwargs})


def assert_no_store(response):
    assert "no-store" in response.headers.get("Cache-Control", ""), response.headers.get("Cache-Control")


# --- the annotator's own earnings -------------------------------------------------------------


def test_an_annotator_sees_their_own_earnings_only(api, project, annotator, worked):
    response = api(annotator).get(url("earnings", project))
    assert response.status_code == 200
    assert_no_store(response)
    body = response.json()
    assert body["current"]["examples"] == 1
    assert Decimal(body["current"]["pay"]) == Decimal("0.1")
    assert Decimal(body["current"]["active_seconds"]) == Decimal("20")
    assert {e["annotator"] for e in body["entries"]} == {"ann"}
    assert worked["ann"].pk in {e["annotation"] for e in body["entries"]}
    assert worked["bea"].pk not in {e["annotation"] for e in body["entries"]}
    assert "client_price_per_example" not in body["policy"]
    assert all("client_amount" not in e for e in body["entries"])


def test_an_annotator_reads_only_their_own_rows_of_the_project_ledger(api, project, annotator, worked):
    response = api(annotator).get(url("entry-list", project))
    assert response.status_code == 200
    rows = response.json()["results"]
    assert rows and {r["annotator"] for r in rows} == {"ann"}
    assert all("client_amount" not in r for r in rows)
    # asking for someone else's rows gives nothing, not their pay
    assert api(annotator).get(url("entry-list", project), {"annotator": "bea"}).json()["results"] == []
    assert {b["annotator"] for b in api(annotator).get(url("balance-list", project)).json()["results"]} == {"ann"}


@pytest.mark.parametrize("role", [Membership.Role.ADMIN, Membership.Role.AUDITOR])
def test_admins_and_auditors_read_the_whole_project_ledger(api, project, worked, role):
    reader = add_member(project, role)
    response = api(reader).get(url("entry-list", project))
    assert response.status_code == 200
    assert_no_store(response)
    rows = response.json()["results"]
    assert {r["annotator"] for r in rows} == {"ann", "bea"}
    assert sum(Decimal(r["client_amount"]) for r in rows) == Decimal("0.5")
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    verify = api(reader).get(url("verify", project))
    assert verify.status_code == 200 and verify.json()["ok"] is True
    assert len(api(reader).get(url("pay-policies", project)).json()) == 1
    filtered = api(reader).get(url("entry-list", project), {"annotator": "bea", "kind": "piece_pay"}).json()
    assert [r["annotation"] for r in filtered["results"]] == [worked["bea"].pk]


def test_strangers_get_404_and_annotators_403_on_admin_reads(api, project, annotator, worked):
    stranger = UserFactory()
    for name in ("earnings", "entry-list", "verify", "pay-policies", "settlement-list"):
        response = api(stranger).get(url(name, project))
        assert response.status_code == 404, name
        assert_no_store(response)
    for name in ("verify", "pay-policies"):
        response = api(annotator).get(url(name, project))
        assert response.status_code == 403, name
        assert_no_store(response)
    assert api().get(url("earnings", project)).status_code in (401, 403)


# --- pay policy and manual entries: admins write, nobody else ---------------------------------


def test_only_admins_set_the_pay_policy(api, project, admin_user, annotator, auditor):
    payload = {"piece_rate": "0.12", "floor_hourly_rate": "15.00", "hourly_categories": ["submitted"]}
    for user in (annotator, auditor):
        response = api(user).post(url("pay-policies", project), payload, format="json")
        assert response.status_code == 403
        assert_no_store(response)
    response = api(admin_user).post(url("pay-policies", project), payload, format="json")
    assert response.status_code == 201, response.json()
    assert_no_store(response)
    body = response.json()
    assert (body["version"], body["currency"], Decimal(body["piece_rate"])) == (1, "USD", Decimal("0.12"))
    bad = api(admin_user).post(url("pay-policies", project), {"piece_rate": "-1"}, format="json")
    assert bad.status_code == 400
    past = api(admin_user).post(
        url("pay-policies", project), {"effective_from": "2001-01-01T00:00:00Z", "piece_rate": "1"}, format="json"
    )
    assert past.status_code == 400 and "past" in past.json()["detail"]
    assert PayPolicy.objects.count() == 1


def test_admins_post_bonuses_auditors_cannot(api, project, admin_user, auditor, annotator, live_policy):
    payload = {"annotator": "ann", "kind": "bonus", "amount": "5.00", "reason": "weekend", "idempotency_key": "b1"}
    assert api(auditor).post(url("manual-entry", project), payload, format="json").status_code == 403
    assert api(annotator).post(url("manual-entry", project), payload, format="json").status_code == 403
    first = api(admin_user).post(url("manual-entry", project), payload, format="json")
    again = api(admin_user).post(url("manual-entry", project), payload, format="json")
    assert first.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert LedgerEntry.objects.filter(kind=Kind.BONUS).count() == 1
    assert (
        api(admin_user).post(url("manual-entry", project), {**payload, "kind": "piece_pay"}, format="json").status_code
        == 400
    )


def test_there_is_no_way_to_edit_an_entry_through_the_api(api, project, admin_user, worked):
    entry_id = LedgerEntry.objects.first().pk
    for method in ("put", "patch", "delete"):
        response = getattr(api(admin_user), method)(url("entry-list", project), {"id": entry_id}, format="json")
        assert response.status_code == 405, method


# --- reviewing labels --------------------------------------------------------------------------


def test_an_admin_rejects_a_label_and_the_ledger_records_it(api, project, admin_user, auditor, annotator, worked):
    annotation = worked["ann"]
    target = url("annotation-review", project, annotation_id=annotation.pk)
    assert api(auditor).post(target, {"status": "rejected"}, format="json").status_code == 403
    assert api(annotator).post(target, {"status": "rejected"}, format="json").status_code == 403
    response = api(admin_user).post(target, {"status": "rejected", "reason": "off-topic"}, format="json")
    assert response.status_code == 200, response.json()
    assert_no_store(response)
    annotation.refresh_from_db()
    assert annotation.status == Annotation.Status.REJECTED
    # the time moves to `rejected`, naming the admin and the reason; the piece pay stays
    # (the policy's pay_rejected_work defaults to yes: test_review_labor.py covers both)
    moved = LedgerEntry.objects.get(annotator=annotator, kind=Kind.REVERSAL)
    assert moved.reversed_kind != Kind.PIECE_PAY
    assert moved.acting_user_id == admin_user.pk and "off-topic" in moved.reason
    assert LedgerEntry.objects.get(annotator=annotator, time_category="rejected").acting_user_id == admin_user.pk
    other = make_project(admin=admin_user, name="Elsewhere")
    assert (
        api(admin_user)
        .post(url("annotation-review", other, annotation_id=annotation.pk), {"status": "rejected"}, format="json")
        .status_code
        == 404
    )


# --- instruction reading ------------------------------------------------------------------------


def test_reading_the_instructions_through_the_api(api, project, annotator, auditor, live_policy):
    beat = api(annotator).post(url("instructions-heartbeat", project))
    assert beat.status_code == 200 and beat.json()["heartbeat_count"] == 1
    assert_no_store(beat)
    assert api(annotator).post(url("instructions-close", project)).status_code == 204
    assert LedgerEntry.objects.filter(time_category="instruction_reading", annotator=annotator).count() == 1
    assert api(auditor).post(url("instructions-heartbeat", project)).status_code == 403


# --- pay never appears in task payloads ------------------------------------------------------------

PAY_WORDS = ("pay", "amount", "rate", "price", "earn", "wage", "bonus", "ledger", "floor")


def _keys(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


def test_task_payloads_carry_no_pay(api, project, annotator, examples, live_policy):
    client = api(annotator)
    claim = client.post(reverse("annotation:queue-next", kwargs={"slug": project.slug}), {}, format="json")
    beat = client.post(reverse("annotation:attempt-heartbeat", kwargs={"attempt_id": claim.json()["id"]}))
    submit = client.post(
        reverse("annotation:attempt-submit", kwargs={"attempt_id": claim.json()["id"]}),
        {"labels": [project.labels.first().pk]},
        format="json",
    )
    project_view = client.get(reverse("annotation:project-detail", kwargs={"slug": project.slug}))
    assert submit.status_code == 201
    assert LedgerEntry.objects.filter(kind=Kind.PIECE_PAY).exists()  # it was paid...
    for response in (claim, beat, submit, project_view):  # ...and none of these says so
        keys = set(_keys(response.json()))
        assert not [k for k in keys if any(word in k.lower() for word in PAY_WORDS)], keys


# --- the earnings page ----------------------------------------------------------------------------


def test_the_earnings_page_shows_the_entries_behind_the_pay(project, annotator, worked):
    client = Client()
    client.force_login(annotator)
    response = client.get(reverse("earnings:project", kwargs={"slug": project.slug}))
    assert response.status_code == 200
    assert_no_store(response)
    html = response.content.decode()
    for marker in (
        'id="earnings"',
        'id="earnings-today"',
        'id="today-pay"',
        'id="today-active-hours"',
        'id="today-wall-hours"',
        'id="today-examples"',
        'id="today-effective-rate"',
        'id="today-top-up"',
        'id="earnings-periods"',
        'id="earnings-entries"',
        'id="earnings-time-categories"',
    ):
        assert marker in html, marker
    assert f'data-annotation-id="{worked["ann"].pk}"' in html
    assert f'data-annotation-id="{worked["bea"].pk}"' not in html
    assert 'data-kind="piece_pay"' in html and 'data-amount="0.100000"' in html
    assert '<dd id="today-examples">1</dd>' in html
    assert "client" not in html.lower()


def test_nobody_reads_another_annotators_earnings_page_but_admins(project, annotator, admin_user, worked):
    page = reverse("earnings:project", kwargs={"slug": project.slug})
    client = Client()
    client.force_login(annotator)
    assert client.get(page, {"annotator": "bea"}).status_code == 404
    client.force_login(admin_user)
    response = client.get(page, {"annotator": "bea"})
    assert response.status_code == 200
    assert f'data-annotation-id="{worked["bea"].pk}"' in response.content.decode()
    stranger = Client()
    stranger.force_login(UserFactory())
    assert stranger.get(page).status_code == 404
    anonymous = Client().get(page)
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]


def test_the_earnings_index_lists_the_users_projects(project, annotator, admin_user):
    other = make_project(admin=admin_user, name="Not yours")
    add_examples(other, ["x"])
    client = Client()
    client.force_login(annotator)
    html = client.get(reverse("earnings:index")).content.decode()
    assert f'data-project="{project.slug}"' in html and other.slug not in html
