"""Filter and ordering injection (CVE-2023-47117: Label Studio's filters took any field path,
so `annotator__password__startswith=` leaked password hashes one character at a time).

Here client-supplied ordering and filters are allow-listed: the predictions list takes an
`ordering` from a fixed list and answers 400 to anything else; every other query parameter
of every GET operation is either validated (400) or ignored, never turned into a field path:
an answer with an injected lookup is the same as the answer without it, so it cannot be an
oracle. Django's admin changelists refuse lookups outside their list_filter (400).
"""

import re

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from training.models import Prediction

from .test_idor import operations

INJECTIONS = [
    {"ordering": "annotator__password"},
    {"ordering": "-example__annotations__annotator__password"},
    {"o": "annotator__password"},
    {"order_by": "annotator__password"},
    {"sort": "password"},
    {"annotator__password__startswith": "argon2"},
    {"example__project__slug": "bravo"},
    {"project__memberships__user__is_superuser": "true"},
    {"search": "zzsecreta"},
]


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr("training.apis.explain_prediction.delay", lambda *a, **k: None)


def admin_client(world):
    client = APIClient()
    client.force_authenticate(world.users["a-admin"])
    return client


def get(client, url, params=None):
    response = client.get(url, params or {})
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, content


@pytest.mark.parametrize(
    "ordering",
    [
        "annotator__password",
        "example__text",
        "-label__project__memberships__user__password",
        "version__weights_path",
        "confidence,example__text",
        "confidence; DROP TABLE x",
    ],
)
def test_prediction_ordering_outside_the_allow_list_is_400(world, ordering):
    url = f"/api/projects/{world.a.slug}/predictions/"
    response = admin_client(world).get(url, {"ordering": ordering})
    assert response.status_code == 400, response.content
    assert "ordering" in response.data


def test_prediction_orderings_of_the_allow_list_work(world):
    from training.selectors import PREDICTION_ORDERINGS

    client = admin_client(world)
    url = f"/api/projects/{world.a.slug}/predictions/"
    n = Prediction.objects.filter(project=world.a).count()
    assert n > 0
    for ordering in PREDICTION_ORDERINGS:
        response = client.get(url, {"ordering": ordering})
        assert response.status_code == 200, (ordering, response.content)
        assert response.data["count"] == n
    ascending = [p["confidence"] for p in client.get(url, {"ordering": "confidence"}).data["results"]]
    assert ascending == sorted(ascending)


def test_prediction_filters_are_typed(world):
    client = admin_client(world)
    url = f"/api/projects/{world.a.slug}/predictions/"
    for params in ({"label": "1 OR 1=1"}, {"min_confidence": "x"}, {"max_confidence": "2"}, {"labeled": "maybe"}):
        assert client.get(url, params).status_code == 400, params


def test_no_get_operation_turns_a_query_parameter_into_a_field_path(world):
    client = admin_client(world)
    ids = world.ids
    problems, compared = [], 0
    for method, path, _ in operations():
        if method != "GET":
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), path)
        before = get(client, url)
        for params in INJECTIONS:
            status, content = get(client, url, params)
            if status == 400:
                continue
            after = get(client, url)
            if (status, content) not in (before, after):
                problems.append(f"GET {path}?{params}: the answer changed ({status})")
            compared += 1
    assert compared > 100
    assert not problems, "\n".join(problems)


def test_no_password_hash_oracle(world):
    """The exact CVE-2023-47117 probe: the right prefix and a wrong one answer the same."""
    owner = world.users["a-owner"]
    owner.set_password("a long and unguessable passphrase")
    owner.save()
    right = get_user_model().objects.get(pk=owner.pk).password[:12]
    wrong = right[:-1] + ("x" if right[-1] != "x" else "y")
    client = admin_client(world)
    for url in (
        f"/api/projects/{world.a.slug}/annotations/",
        f"/api/projects/{world.a.slug}/ledger/entries/",
        f"/api/projects/{world.a.slug}/examples/",
    ):
        for field in ("annotator__password__startswith", "example__annotations__annotator__password__startswith"):
            assert get(client, url, {field: right}) == get(client, url, {field: wrong}), (url, field)


def test_no_view_gets_an_implicit_ordering_or_search_filter():
    """DRF's OrderingFilter with ordering_fields unset or '__all__' orders by any field path:
    no backend is switched on for every view, and a view that adds one lists its fields."""
    from django.urls import get_resolver
    from rest_framework.filters import OrderingFilter, SearchFilter

    assert not settings.REST_FRAMEWORK.get("DEFAULT_FILTER_BACKENDS")
    views = []

    def collect(patterns):
        for p in patterns:
            if hasattr(p, "url_patterns"):
                collect(p.url_patterns)
            elif getattr(p.callback, "cls", None) is not None:
                views.append(p.callback.cls)

    collect(get_resolver().url_patterns)
    assert len(views) > 30
    for view in views:
        backends = getattr(view, "filter_backends", None) or []
        if any(issubclass(b, OrderingFilter) for b in backends):
            assert getattr(view, "ordering_fields", None) not in (None, "__all__"), view
            assert not any("__" in f for f in view.ordering_fields if "password" in f), view
        if any(issubclass(b, SearchFilter) for b in backends):
            assert all("password" not in f for f in getattr(view, "search_fields", [])), view


@pytest.mark.parametrize(
    "model_url",
    [
        "annotation/annotation",
        "annotation/attempt",
        "annotation/membership",
        "annotation/example",
        "labor_ledger/ledgerentry",
        "labor_ledger/settlement",
    ],
)
def test_admin_changelists_refuse_lookups_outside_their_filters(world, model_url):
    superuser = get_user_model().objects.create_superuser("root-injection", password="x-unused-password-1")
    client = Client()
    client.force_login(superuser)
    url = f"/admin/{model_url}/"
    assert client.get(url).status_code == 200
    for param in (
        "annotator__password__startswith",
        "user__password__startswith",
        "project__memberships__user__password__startswith",
        "project__created_by__password__startswith",
    ):
        response = client.get(url, {param: "argon2"})
        # 400: a real path the admin does not allow (DisallowedModelAdminLookup); a path that
        # does not exist on this model sends the admin to its error page (?e=1). Never a filter.
        refused = response.status_code == 400 or (response.status_code == 302 and response.url.endswith("?e=1"))
        assert refused, (url, param, response.status_code)
        if param.startswith("project__"):  # a real path on every one of these models
            assert response.status_code == 400, (url, param)
    assert admin.site.is_registered(get_user_model())  # the user admin too: its own lookups only
    assert client.get("/admin/auth/user/", {"password__startswith": "argon2"}).status_code == 400
