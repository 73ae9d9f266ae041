"""Fixtures and helpers of the console tests."""

import re

import pytest
from django.contrib.auth.models import Group

from core.roles import ADMINS_GROUP
from tests.factories import UserFactory, make_project


@pytest.fixture
def client_for(client):
    def login(user):
        client.logout()
        client.force_login(user)
        return client

    return login


@pytest.fixture
def other_admin(db):
    """The admin of another project: every console page of ours is a 404 to them."""
    user = UserFactory(username="olga-other")
    make_project(admin=user, name="Other project")
    return user


@pytest.fixture
def tally_admin(admin_user):
    admin_user.groups.add(Group.objects.get(name=ADMINS_GROUP))
    return admin_user


def nav_keys(html: str) -> list[str]:
    return re.findall(r'data-nav="([a-z-]+)"', html)


def assert_no_inline_script(html: str) -> None:
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.IGNORECASE)
    assert not re.search(r"\sstyle\s*=", html, flags=re.IGNORECASE)
