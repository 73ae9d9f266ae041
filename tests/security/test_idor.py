"""Cross-tenant access (IDOR), walked over every operation of the OpenAPI schema.

The route list is not written by hand: it comes from drf-spectacular's generator, so a new
endpoint is walked as soon as it exists, and must be given its roles in ACCESS below (the
test fails until it is). Each operation is called with project A's slug and A's object ids

- by users of another project (each role of B), a user without projects, a staff user
  without projects, and anonymously: 404 (401/403 anonymously), and nothing of A in any
  answer: no string with A's marker, no integer in A's id band;
- by each role of A: the roles ACCESS names get a real answer (2xx, or 409 for a state
  clash), the others 403, or 404 for another annotator's attempt;
- by users of B with B's own slug but A's object ids in the path: 403/404, never A's rows;

and the other annotator of A never sees the owner's private rows (their id band, their name).
"""

import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from .world import MARK_A, MARK_OWNER

ALL = {"admin", "auditor", "annotator", "owner"}
READERS = {"admin", "auditor"}
ADMINS = {"admin"}
WORKERS = {"admin", "annotator", "owner"}
OWNER = {"owner"}  # the annotator who holds the attempt
EVERYONE = "everyone"  # not project-scoped: any logged-in user gets an answer (scoped to them)
NOBODY = set()

# (method, path) -> the roles of project A that may call it.
ACCESS = {
    ("GET", "/api/projects/"): EVERYONE,
    ("POST", "/api/projects/"): NOBODY,  # Tally admins (a site-wide group) only; none here
    ("GET", "/api/projects/{slug}/"): ALL,
    ("PATCH", "/api/projects/{slug}/"): ADMINS,
    ("POST", "/api/projects/{slug}/labels/"): ADMINS,
    ("GET", "/api/projects/{slug}/members/"): READERS,
    ("POST", "/api/projects/{slug}/members/"): ADMINS,
    ("GET", "/api/projects/{slug}/examples/"): ALL,
    ("GET", "/api/projects/{slug}/annotations/"): ALL,
    ("POST", "/api/projects/{slug}/annotations/{annotation_id}/review/"): ADMINS,
    ("POST", "/api/projects/{slug}/queue/next/"): WORKERS,
    ("POST", "/api/projects/{slug}/undo/"): WORKERS,
    ("POST", "/api/attempts/{attempt_id}/heartbeat/"): OWNER,
    ("POST", "/api/attempts/{attempt_id}/submit/"): OWNER,
    ("POST", "/api/attempts/{attempt_id}/skip/"): OWNER,
    ("GET", "/api/projects/{slug}/imports/"): READERS,
    ("POST", "/api/projects/{slug}/imports/"): ADMINS,
    ("GET", "/api/projects/{slug}/imports/{batch_id}/"): READERS,
    ("GET", "/api/projects/{slug}/export/"): READERS,
    ("GET", "/api/projects/{slug}/agreement/"): READERS,
    ("GET", "/api/projects/{slug}/agreement/reliability/"): READERS,
    ("GET", "/api/projects/{slug}/agreement/mine/"): WORKERS,
    ("GET", "/api/projects/{slug}/review/decisions/"): READERS,
    ("POST", "/api/projects/{slug}/review/decisions/"): ADMINS,
    ("GET", "/api/projects/{slug}/earnings/"): ALL,
    ("GET", "/api/projects/{slug}/ledger/entries/"): ALL,
    ("POST", "/api/projects/{slug}/ledger/manual-entries/"): ADMINS,
    ("GET", "/api/projects/{slug}/ledger/settlements/"): ALL,
    ("GET", "/api/projects/{slug}/ledger/balances/"): ALL,
    ("GET", "/api/projects/{slug}/ledger/verify/"): READERS,
    ("GET", "/api/projects/{slug}/ledger/checkpoints/"): READERS,
    ("GET", "/api/projects/{slug}/pay-policies/"): READERS,
    ("POST", "/api/projects/{slug}/pay-policies/"): ADMINS,
    ("POST", "/api/projects/{slug}/instructions/heartbeat/"): WORKERS,
    ("POST", "/api/projects/{slug}/instructions/close/"): WORKERS,
    ("GET", "/api/projects/{slug}/training/config/"): READERS,
    ("PATCH", "/api/projects/{slug}/training/config/"): ADMINS,
    ("GET", "/api/projects/{slug}/training/runs/"): READERS,
    ("POST", "/api/projects/{slug}/training/runs/"): ADMINS,
    ("GET", "/api/projects/{slug}/training/runs/{run_id}/"): READERS,
    ("GET", "/api/projects/{slug}/training/embeddings/"): READERS,
    ("POST", "/api/projects/{slug}/training/embeddings/"): ADMINS,
    ("GET", "/api/projects/{slug}/models/"): READERS,
    ("GET", "/api/projects/{slug}/models/{sequence}/"): READERS,
    ("GET", "/api/projects/{slug}/models/{sequence}/learning-curve/"): READERS,
    ("GET", "/api/projects/{slug}/models/{sequence}/manifest/"): READERS,
    ("GET", "/api/projects/{slug}/models/{sequence}/agreement/"): READERS,
    ("GET", "/api/projects/{slug}/models/{sequence}/labor-card/"): READERS,
    ("GET", "/api/projects/{slug}/models/{sequence}/datasheet/"): READERS,
    ("GET", "/api/projects/{slug}/time-disputes/"): ALL,  # an annotator lists their own
    ("POST", "/api/projects/{slug}/time-disputes/"): WORKERS,  # about their own time
    ("POST", "/api/projects/{slug}/time-disputes/{dispute_id}/decision/"): ADMINS,
    ("GET", "/api/projects/{slug}/labor-reports/"): READERS,
    ("GET", "/api/projects/{slug}/predictions/"): READERS,
    ("POST", "/api/projects/{slug}/predictions/accept/"): ADMINS,
    ("GET", "/api/projects/{slug}/examples/{example_id}/explanation/"): READERS,
    ("GET", "/api/projects/{slug}/welfare/"): ADMINS,
    ("PATCH", "/api/projects/{slug}/welfare/"): ADMINS,
    ("GET", "/api/projects/{slug}/welfare/status/"): ALL,  # one's own exposure
    ("POST", "/api/projects/{slug}/welfare/marks/"): ADMINS,
    ("POST", "/api/projects/{slug}/welfare/word-list/apply/"): ADMINS,
    ("POST", "/api/projects/{slug}/breaks/start/"): WORKERS,
    ("POST", "/api/breaks/end/"): EVERYONE,  # one's own break (409 without one)
    ("GET", "/api/welfare/opt-outs/"): EVERYONE,  # one's own
    ("PUT", "/api/welfare/opt-outs/"): EVERYONE,
}

OUTSIDERS = ["anonymous", "loner", "staff-loner", "b-admin", "b-auditor", "b-annotator"]
# A's roles, the attempt's owner last (the walk submits its attempt).
INSIDERS = ["a-other", "a-auditor", "a-admin", "a-owner"]


def operations() -> list[tuple[str, str, dict]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (method.upper(), path, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


class Bodies:
    """A valid body for each write, so that a refusal is about who asks, not what they sent."""

    def __init__(self, world, ids):
        self.world, self.ids, self.n = world, ids, 0

    def __call__(self, method, path):
        self.n += 1
        n, ids = self.n, self.ids
        owner = self.world.users["a-owner"].username
        bodies = {
            "/api/projects/": {"name": f"new {n}", "labels": ["x", "y"]},
            "/api/projects/{slug}/": {"instructions": "Read carefully."},
            "/api/projects/{slug}/labels/": {"name": f"label {n}"},
            "/api/projects/{slug}/members/": {"username": owner, "role": "annotator"},
            "/api/projects/{slug}/annotations/{annotation_id}/review/": {"status": "rejected", "reason": "r"},
            "/api/attempts/{attempt_id}/submit/": {"labels": [ids["label_id"]], "idempotency_key": f"k{n}"},
            "/api/projects/{slug}/ledger/manual-entries/": {
                "annotator": owner,
                "kind": "bonus",
                "amount": "1.00",
                "reason": "thanks",
                "idempotency_key": f"bonus-{n}",
            },
            "/api/projects/{slug}/pay-policies/": {"piece_rate": "0.20"},
            "/api/projects/{slug}/training/config/": {"qc_share": 0.1},
            "/api/projects/{slug}/predictions/accept/": {"min_confidence": 0.999},
            "/api/projects/{slug}/time-disputes/": {
                "day": ids["disputed_day"],
                "claimed_seconds": "3600",
                "note": f"dispute {n}",
            },
            "/api/projects/{slug}/time-disputes/{dispute_id}/decision/": {"outcome": "reject", "reason": "no"},
            "/api/projects/{slug}/welfare/": {"max_texts_per_day": 100},
            "/api/projects/{slug}/review/decisions/": {
                "example": ids["example_id"],
                "decision": "correct",
                "labels": [ids["label_id"]],
                "idempotency_key": f"review-{n}",
            },
            "/api/projects/{slug}/welfare/marks/": {"example_ids": [ids["example_id"]], "categories": ["other"]},
        }
        if path == "/api/projects/{slug}/imports/" and method == "POST":
            upload = SimpleUploadedFile(f"rows{n}.csv", f"text\nimported row {n}\n".encode(), "text/csv")
            return {"file": upload}, "multipart"
        return bodies.get(path, {}), "json"


def call(user, method, path, ids, bodies):
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    url = re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), path)
    body, fmt = bodies(method, path) if method != "GET" else (None, None)
    response = getattr(client, method.lower())(url, body, format=fmt)
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, content


def leaks(content: bytes, *, markers: tuple[str, ...], band: tuple[int, int]) -> list[str]:
    """Markers and in-band integers found in an answer (JSON walked; other text scanned)."""
    text = content.decode("utf-8", "replace")
    found = [m for m in markers if m in text.lower()]
    lo, hi = band
    try:
        data = json.loads(text) if text else None
    except ValueError:
        found += [n for n in re.findall(r"(?<![\w.])\d+(?![\w.])", text) if lo <= int(n) < hi]
        return found

    def walk(value):
        if isinstance(value, bool):
            return
        if isinstance(value, int) and lo <= value < hi:
            found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(data)
    return found


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """The explanation view rings the worker's doorbell at once (not on commit): keep it quiet."""
    monkeypatch.setattr("training.apis.explain_prediction.delay", lambda *a, **k: None)


def test_every_operation_has_its_roles_declared():
    walked = {(method, path) for method, path, _ in operations()}
    missing = walked - set(ACCESS)
    assert not missing, f"New endpoints: add them to ACCESS in {__file__} with the roles that may call them: {missing}"
    assert not set(ACCESS) - walked, f"ACCESS names endpoints that no longer exist: {set(ACCESS) - walked}"


def test_outsiders_get_404_and_nothing_of_the_other_project(world):
    bodies = Bodies(world, world.ids)
    problems = []
    for actor in OUTSIDERS:
        user = world.users[actor]
        for method, path, _ in operations():
            status, content = call(user, method, path, world.ids, bodies)
            scoped = "{" in path
            if user is None:
                ok = status in (401, 403)
            elif scoped:
                ok = status == 404
            else:
                ok = ACCESS[(method, path)] == EVERYONE or status == 403
            if not ok:
                problems.append(f"{actor} {method} {path}: {status} {content[:200]!r}")
            found = leaks(content, markers=(MARK_A,), band=world.a_band)
            if found:
                problems.append(f"{actor} {method} {path}: leaks {found[:5]}")
    assert not problems, "\n".join(problems)


def test_each_role_gets_exactly_its_rights(world):
    bodies = Bodies(world, world.ids)
    problems = []
    calls = 0
    for actor in INSIDERS:
        role = world.roles[actor]
        for method, path, _ in operations():
            allowed = ACCESS[(method, path)]
            status, content = call(world.users[actor], method, path, world.ids, bodies)
            calls += 1
            if allowed == EVERYONE or role in allowed or (role == "owner" and "annotator" in allowed):
                ok = status < 400 or status == 409
            elif allowed == OWNER:
                ok = status == 404  # someone else's attempt, admins' included: answered like a missing one
            else:
                ok = status == 403
            if not ok:
                problems.append(f"{actor} ({role}) {method} {path}: {status} {content[:300]!r}")
            if actor == "a-other":
                found = leaks(content, markers=(MARK_OWNER,), band=world.owner_band)
                if found:
                    problems.append(f"a-other {method} {path}: sees the owner's rows {found[:5]}")
    assert calls == len(INSIDERS) * len(ACCESS)
    assert not problems, "\n".join(problems)


def test_own_slug_with_foreign_ids_is_refused(world):
    """doccano's class of bug: the view checks the project in the URL, but not that the
    object named next to it belongs to that project."""
    ids = dict(world.ids, slug=world.b.slug, label_id=world.b_ids["label_id"])
    bodies = Bodies(world, ids)
    problems = []
    object_paths = [(m, p) for m, p, _ in operations() if re.search(r"\{(?!slug\})\w+\}", p)]
    assert len(object_paths) >= 10
    for actor in ("b-admin", "b-auditor", "b-annotator"):
        for method, path in object_paths:
            status, content = call(world.users[actor], method, path, ids, bodies)
            if status not in (403, 404):
                problems.append(f"{actor} {method} {path} with A's ids: {status} {content[:200]!r}")
            found = leaks(content, markers=(MARK_A,), band=world.a_band)
            if found:
                problems.append(f"{actor} {method} {path}: leaks {found[:5]}")
    assert not problems, "\n".join(problems)


def test_foreign_ids_in_bodies_are_refused_or_ignored(world):
    """Ids of project A inside a request to project B: labels, examples, usernames."""
    from annotation.models import Annotation

    b_admin = APIClient()
    b_admin.force_authenticate(world.users["b-admin"])
    b_annotator = APIClient()
    b_annotator.force_authenticate(world.users["b-annotator"])
    before = Annotation.objects.filter(project=world.a).count()

    # a B attempt submitted with one of A's labels
    response = b_annotator.post(
        f"/api/attempts/{world.b_ids['attempt_id']}/submit/", {"labels": [world.ids["label_id"]]}, format="json"
    )
    assert response.status_code == 400, response.content
    # accepting predictions of A's examples into B
    response = b_admin.post(
        f"/api/projects/{world.b.slug}/predictions/accept/",
        {"min_confidence": 0.0, "examples": [world.ids["example_id"]], "labels": [world.ids["label_id"]]},
        format="json",
    )
    assert response.status_code in (201, 409), response.content
    assert not leaks(response.content, markers=(MARK_A,), band=world.a_band)
    # a bonus in B's ledger for A's owner, who is no member of B
    response = b_admin.post(
        f"/api/projects/{world.b.slug}/ledger/manual-entries/",
        {
            "annotator": world.users["a-owner"].username,
            "kind": "bonus",
            "amount": "5.00",
            "reason": "x",
            "idempotency_key": "k",
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    # B's ledger filtered by A's owner: nothing
    response = b_admin.get(
        f"/api/projects/{world.b.slug}/ledger/entries/", {"annotator": world.users["a-owner"].username}
    )
    assert response.status_code == 200 and response.data["count"] == 0
    assert Annotation.objects.filter(project=world.a).count() == before
