"""Fixtures and helpers of the console tests."""

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
