"""Logging in: CSRF on both login forms, repeated failures throttled per username and
address (frontend/login.py), Argon2 hashes."""

import time
import uuid

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.test import Client

from config.settings import base as base_settings
from tests.factories import UserFactory

PASSWORD = "pw-for-tests-only"  # tests.factories.UserFactory's
LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


@pytest.fixture
def user(db):
    return UserFactory(username=f"login-{uuid.uuid4().hex[:8]}", is_staff=True, is_superuser=True)


@pytest.fixture
def address():
    """A client address of its own per test: the cache (Redis) outlives each test."""
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


def post(url, username, password, ip, client=None):
    client = client or Client(REMOTE_ADDR=ip)
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip)


def logged_in(response) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client.session


# --- CSRF -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [LOGIN, ADMIN_LOGIN])
def test_login_forms_enforce_csrf(user, url):
    client = Client(enforce_csrf_checks=True)
    response = client.post(url, {"username": user.username, "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session
    # with the token the page hands out, the same request logs in
    client.get(url)
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post(url, {"username": user.username, "password": PASSWORD, "csrfmiddlewaretoken": token})
    assert response.status_code == 302, response.content[:500]
    assert client.session["_auth_user_id"] == str(user.pk)


def test_logout_is_post_only_and_csrf_protected(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/accounts/logout/").status_code == 405
    assert client.post("/accounts/logout/").status_code == 403
    assert "_auth_user_id" in client.session


# --- throttling -------------------------------------------------------------------------


@pytest.mark.parametrize("url", [LOGIN, ADMIN_LOGIN])
def test_repeated_failures_lock_out_that_username_from_that_address(user, address, url):
    limit = settings.TALLY_LOGIN_MAX_FAILURES
    for _ in range(limit):
        response = post(url, user.username, "wrong password", address)
        assert response.status_code == 200 and not logged_in(response)
    # locked: even the right password is refused, unchecked
    response = post(url, user.username, PASSWORD, address)
    assert not logged_in(response)
    assert "Too many failed logins" in response.content.decode()
    if url == LOGIN:
        assert response.status_code == 429 and int(response["Retry-After"]) > 0
    # the same person from another address, and another account from this one, are not locked
    assert logged_in(post(url, user.username, PASSWORD, address + "1"))
    other = UserFactory(username=f"other-{uuid.uuid4().hex[:8]}", is_staff=True, is_superuser=True)
    assert logged_in(post(url, other.username, PASSWORD, address))


def test_unknown_usernames_are_throttled_alike(db, address):
    """No enumeration: a made-up name is counted and locked like a real one."""
    name = f"nobody-{uuid.uuid4().hex[:8]}"
    answers = [post(LOGIN, name, "guess", address).status_code for _ in range(settings.TALLY_LOGIN_MAX_FAILURES + 1)]
    assert answers == [200] * settings.TALLY_LOGIN_MAX_FAILURES + [429]


def test_username_case_does_not_dodge_the_count(user, address):
    for i in range(settings.TALLY_LOGIN_MAX_FAILURES):
        post(LOGIN, user.username.upper() if i % 2 else user.username, "wrong", address)
    assert post(LOGIN, user.username, PASSWORD, address).status_code == 429


def test_a_successful_login_clears_the_count(user, address):
    for _ in range(settings.TALLY_LOGIN_MAX_FAILURES - 1):
        post(LOGIN, user.username, "wrong", address)
    assert logged_in(post(LOGIN, user.username, PASSWORD, address))
    for _ in range(settings.TALLY_LOGIN_MAX_FAILURES - 1):
        post(LOGIN, user.username, "wrong", address)
    assert logged_in(post(LOGIN, user.username, PASSWORD, address))


def test_the_lockout_ends_after_its_window(user, address, settings):
    settings.TALLY_LOGIN_LOCKOUT_SECONDS = 1
    for _ in range(settings.TALLY_LOGIN_MAX_FAILURES):
        post(LOGIN, user.username, "wrong", address)
    assert post(LOGIN, user.username, PASSWORD, address).status_code == 429
    time.sleep(1.5)
    assert logged_in(post(LOGIN, user.username, PASSWORD, address))


def test_login_still_works_when_the_cache_is_down(user, address, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("redis is restarting")

    for name in ("get", "add", "incr", "set", "delete", "make_and_validate_key"):
        monkeypatch.setattr(cache, name, down)
    assert post(LOGIN, user.username, "wrong", address).status_code == 200
    assert logged_in(post(LOGIN, user.username, PASSWORD, address))


# --- password hashing -----------------------------------------------------------------------


def test_passwords_are_hashed_with_argon2id_and_old_hashes_upgraded(db, settings, address):
    settings.PASSWORD_HASHERS = base_settings.PASSWORD_HASHERS
    assert make_password("x").startswith("argon2$argon2id$")
    legacy = UserFactory(username=f"legacy-{uuid.uuid4().hex[:8]}")
    legacy.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    legacy.save()
    assert logged_in(post(LOGIN, legacy.username, PASSWORD, address))
    assert get_user_model().objects.get(pk=legacy.pk).password.startswith("argon2$argon2id$")


def test_the_admin_login_is_for_superusers_only(db, address):
    """Staff who are not superusers (project admins) log in on the site and use the console."""
    staff = UserFactory(username=f"staff-{uuid.uuid4().hex[:8]}", is_staff=True)
    response = post(ADMIN_LOGIN, staff.username, PASSWORD, address)
    assert response.status_code == 200 and not logged_in(response)
    assert logged_in(post(LOGIN, staff.username, PASSWORD, address))


# --- the throttle's key and its count (issue 15, item 1) -------------------------------------


def test_nfkc_equivalents_of_a_username_share_its_count(user, address):
    """Authentication normalises the username (NFKC, as Django's UsernameField does), so
    fullwidth letters name the same account: they must count against the same lockout."""
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in user.username)
    assert fullwidth != user.username
    for _ in range(settings.TALLY_LOGIN_MAX_FAILURES):
        post(LOGIN, user.username, "wrong", address)
    assert post(LOGIN, fullwidth, PASSWORD, address).status_code == 429
    assert post(LOGIN, f" {fullwidth} ", PASSWORD, address).status_code == 429


def test_concurrent_wrong_logins_check_at_most_the_limit(db, address, monkeypatch):
    """40 wrong logins at once for one name: the count is taken before the password is
    checked (one atomic INCR), so no more than the limit are ever checked."""
    import threading

    from django.contrib.auth import forms as auth_forms
    from django.db import connections

    real = auth_forms.authenticate
    checked = []
    lock = threading.Lock()

    def counting(*args, **kwargs):
        with lock:
            checked.append(1)
        time.sleep(0.05)  # widen the window a check-then-act throttle would lose
        return real(*args, **kwargs)

    monkeypatch.setattr(auth_forms, "authenticate", counting)
    name = f"victim-{uuid.uuid4().hex[:8]}"
    statuses = []
    start = threading.Barrier(40)

    def attempt():
        start.wait()
        try:
            statuses.append(post(LOGIN, name, "wrong", address).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(checked) <= settings.TALLY_LOGIN_MAX_FAILURES, len(checked)
    assert sorted(statuses) == [200] * len(checked) + [429] * (40 - len(checked))
