"""Requests over the size limit are refused from their Content-Length, before any of the body
is read (issue 15, item 6): 413, with a message naming the limit."""

import pytest
from django.test import Client

from annotation.models import Membership
from tests.factories import UserFactory, make_project

BOUNDARY = "tally-boundary"


class CountingUpload:
    """A multipart body of `size` bytes made as it is read; `read` counts what was taken."""

    def __init__(self, size: int):
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
            "Content-Type: text/csv\r\n\r\ntext\n"
        ).encode()
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        self.parts = [head, None, tail]
        self.filler = size - len(head) - len(tail)
        self.size = size
        self.read_bytes = 0

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.size - self.read_bytes
        out = bytearray()
        while len(out) < n and self.read_bytes + len(out) < self.size:
            pos = self.read_bytes + len(out)
            head, _, tail = self.parts
            if pos < len(head):
                out += head[pos : pos + n - len(out)]
            elif pos < len(head) + self.filler:
                out += b"x" * min(n - len(out), len(head) + self.filler - pos)
            else:
                start = pos - len(head) - self.filler
                out += tail[start : start + n - len(out)]
        self.read_bytes += len(out)
        return bytes(out)

    def readline(self, n=-1):
        return self.read(n if n and n > 0 else 65536)


def send(client, url, size, **extra):
    body = CountingUpload(size)
    response = client.generic(
        "POST",
        url,
        **{
            "wsgi.input": body,
            "CONTENT_LENGTH": str(size),
            "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
        },
        **extra,
    )
    return response, body


@pytest.fixture
def project(db):
    return make_project(admin=UserFactory(), labels=["yes", "no"])


def admin_client(project) -> Client:
    """The project's admin, made a superuser too so that the Django admin's pages answer."""
    user = project.memberships.get(role=Membership.Role.ADMIN).user
    user.is_staff = user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


def test_an_import_over_the_upload_limit_is_refused_unread(project, settings):
    settings.TALLY_MAX_UPLOAD_BYTES = 1024 * 1024
    response, body = send(admin_client(project), f"/api/projects/{project.slug}/imports/", 3 * 1024 * 1024)
    assert response.status_code == 413, response.content[:300]
    assert body.read_bytes == 0
    assert "TALLY_MAX_UPLOAD_BYTES" in response.json()["detail"]


@pytest.mark.parametrize("url", ["/projects/{slug}/import/", "/admin/annotation/project/{pk}/import/"])
def test_import_pages_take_the_upload_limit_too(project, settings, url):
    settings.TALLY_MAX_UPLOAD_BYTES = 1024 * 1024
    url = url.format(slug=project.slug, pk=project.pk)
    response, body = send(admin_client(project), url, 3 * 1024 * 1024)
    assert response.status_code == 413 and body.read_bytes == 0


def test_an_import_within_the_limit_is_not_refused_by_size(project, settings):
    settings.TALLY_MAX_UPLOAD_BYTES = 1024 * 1024
    response, _ = send(admin_client(project), f"/api/projects/{project.slug}/imports/", 512 * 1024)
    assert response.status_code != 413


def test_other_requests_take_the_request_limit(project, settings):
    response, body = send(
        admin_client(project), f"/api/projects/{project.slug}/labels/", settings.TALLY_MAX_REQUEST_BYTES + 1
    )
    assert response.status_code == 413 and body.read_bytes == 0
    assert "TALLY_MAX_REQUEST_BYTES" in response.json()["detail"]


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_anonymous_login_posts_are_small(db, settings, url):
    response, body = send(Client(), url, 300 * 1024 * 1024)
    assert response.status_code == 413 and body.read_bytes == 0
    response, body = send(Client(), url, settings.TALLY_MAX_LOGIN_REQUEST_BYTES + 1)
    assert response.status_code == 413 and body.read_bytes == 0
    assert "too large" in response.content.decode()


def test_a_content_length_that_is_not_a_number_is_400(project):
    response = admin_client(project).generic(
        "POST", f"/api/projects/{project.slug}/labels/", b"{}", content_type="application/json", CONTENT_LENGTH="-5"
    )
    assert response.status_code == 400
