"""Shared fixtures. Integration fixtures start real processes against the test database."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from annotation.models import Membership
from tests.factories import UserFactory, add_examples, add_member, make_project

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def admin_user(db):
    return UserFactory(username="ada-admin")


@pytest.fixture
def project(admin_user):
    return make_project(admin=admin_user, instructions="Is the review positive or negative?")


@pytest.fixture
def annotator(project):
    return add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="ann"))


@pytest.fixture
def auditor(project):
    return add_member(project, Membership.Role.AUDITOR, UserFactory(username="audrey"))


@pytest.fixture
def examples(project):
    return add_examples(project, [f"Example text number {i}" for i in range(10)])


@pytest.fixture
def api():
    def client_for(user=None):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return client_for


def database_url_for_subprocess() -> str:
    """A URL for the database pytest-django created, for processes we start ourselves."""
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=database_url_for_subprocess(),
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker subprocess, consuming the training, default and embedding queues of the
    test Redis database, writing to the test PostgreSQL database."""
    from config.celery_app import app

    app.control.purge()
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    log = open(log_path, "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            "training,default,embedding",
            "-P",
            "solo",
            "-c",
            "1",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
            "-n",
            f"test-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Celery worker exited early:\n{log_path.read_text()}")
        if app.control.inspect(timeout=1).ping():
            break
    else:
        proc.kill()
        raise RuntimeError(f"Celery worker did not answer within 60 s:\n{log_path.read_text()}")
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
