"""The attack surface outside the per-object rules: response headers on every answer,
uploads never served back, no default accounts or secrets, no self-registration, no
server-side fetch of a client-supplied URL, and model weights loaded only from the store."""

import ast
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import get_resolver
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from annotation.models import ImportBatch
from frontend.middleware import DEFAULT_POLICY
from tests.factories import add_examples

from .test_idor import operations

ROOT = Path(__file__).resolve().parents[2]
APP_DIRS = ["annotation", "training", "labor_ledger", "frontend", "config"]


def app_sources():
    for app in APP_DIRS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def csp_script_sources(header: str) -> list[str]:
    directives = {d.strip().split(" ")[0]: d.strip().split(" ")[1:] for d in header.split(";") if d.strip()}
    return directives.get("script-src", directives.get("default-src", []))


def assert_safe_headers(response, what: str):
    assert response.headers.get("X-Content-Type-Options") == "nosniff", what
    content_type = response.headers.get("Content-Type", "")
    if content_type.startswith("text/html"):
        csp = response.headers.get("Content-Security-Policy", "")
        sources = csp_script_sources(csp)
        assert sources, f"{what}: no script-src in {csp!r}"
        for bad in ("'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:", "blob:"):
            assert bad not in sources, f"{what}: script-src has {bad}"
        assert "frame-ancestors 'none'" in csp and response.headers.get("X-Frame-Options") == "DENY", what


# --- headers on every answer ---------------------------------------------------------------


def test_the_csp_has_no_inline_script():
    assert DEFAULT_POLICY["script-src"] == ["'self'"]
    assert DEFAULT_POLICY["object-src"] == ["'none'"]
    assert "'unsafe-inline'" not in " ".join(sum(DEFAULT_POLICY.values(), []))


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr("training.apis.explain_prediction.delay", lambda *a, **k: None)


def test_every_api_answer_and_page_has_nosniff_and_the_csp(world):
    """Every operation of the schema as A's admin (2xx, 4xx), as an outsider (404),
    anonymously (403), and every page, the admin's included."""
    admin = world.users["a-admin"]
    answered = 0
    for user in (admin, world.users["b-admin"], None):
        client = APIClient()
        if user:
            client.force_authenticate(user)
        for method, path, _ in operations():
            url = re.sub(r"\{(\w+)\}", lambda m: str(world.ids[m.group(1)]), path)
            response = getattr(client, method.lower())(url, {}, format="json")
            assert_safe_headers(response, f"{method} {url} as {user}")
            answered += 1
    pages = Client()
    pages.force_login(admin)
    get_user_model().objects.filter(pk=admin.pk).update(is_staff=True, is_superuser=True)  # the admin: superusers
    for url in [
        "/",
        f"/projects/{world.a.slug}/label/",
        "/earnings/",
        f"/earnings/{world.a.slug}/",
        "/admin/",
        "/admin/annotation/project/",
        f"/admin/annotation/project/{world.a.pk}/change/",
        "/admin/annotation/example/",
        "/api/schema/",
        "/api/docs/",
        "/no-such-page/",
        "/api/projects/?format=api",
    ]:
        response = pages.get(url)
        assert response.status_code in (200, 404), (url, response.status_code)
        assert_safe_headers(response, url)
        answered += 1
    anonymous = Client()
    for url in ("/accounts/login/", "/admin/login/", "/", "/earnings/"):
        assert_safe_headers(anonymous.get(url), url)
    assert answered > 3 * len(operations())


# --- uploads -------------------------------------------------------------------------------


def test_no_route_serves_stored_files():
    from django.views.static import serve

    def callbacks(patterns, prefix=""):
        for p in patterns:
            if hasattr(p, "url_patterns"):
                yield from callbacks(p.url_patterns, prefix + str(p.pattern))
            else:
                yield prefix + str(p.pattern), p.callback

    routes = list(callbacks(get_resolver().url_patterns))
    assert len(routes) > 30
    for route, callback in routes:
        assert callback is not serve, route
        assert "media" not in route, route


@pytest.mark.parametrize(
    "name, content_type, body",
    [
        ("evil.html", "text/html", b"text\n<script>alert(1)</script>\n"),
        ("evil.svg", "image/svg+xml", b'text\n"<svg xmlns=""http://www.w3.org/2000/svg"" onload=""alert(1)""/>"\n'),
    ],
)
def test_an_uploaded_file_is_never_served_back(api, project, admin_user, name, content_type, body):
    response = api(admin_user).post(
        f"/api/projects/{project.slug}/imports/",
        {"file": SimpleUploadedFile(name, body, content_type), "file_format": "csv"},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    batch = ImportBatch.objects.get(pk=response.data["id"])
    stored = batch.upload.name
    assert stored and (Path(settings.MEDIA_ROOT) / stored).exists()
    assert stored not in response.content.decode() and "upload" not in response.data
    detail = api(admin_user).get(response["Location"])
    assert stored not in detail.content.decode()
    client = Client()
    client.force_login(admin_user)
    for url in (f"/media/{stored}", f"/{stored}", f"/static/{stored}", f"/admin/annotation/importbatch/{batch.pk}/"):
        answer = client.get(url)
        assert answer.status_code in (302, 404) or stored not in answer.content.decode(), url
        assert answer.headers.get("Content-Type", "").split(";")[0] not in ("image/svg+xml",), url
    batch.upload.delete(save=False)


def test_the_export_is_an_attachment_never_inline_html(api, project, admin_user, annotator, examples):
    from annotation import services

    add_examples(project, ["<script>alert(1)</script><svg onload=alert(2)>"])
    for _ in range(len(examples) + 1):
        attempt = services.claim_next(project=project, annotator=annotator)
        services.annotation_submit(attempt_id=attempt.pk, annotator=annotator, label_ids=[project.labels.first().pk])
    for fmt, mime in (("csv", "text/csv"), ("json", "application/json")):
        response = api(admin_user).get(f"/api/projects/{project.slug}/export/", {"file_format": fmt})
        assert response.status_code == 200
        assert response["Content-Type"].startswith(mime)
        assert response["Content-Disposition"].startswith("attachment;")
        assert response["X-Content-Type-Options"] == "nosniff"
        assert b"<script>" in b"".join(response.streaming_content)  # data, served as data


# --- secrets, accounts, registration --------------------------------------------------------


def test_no_account_exists_after_migrate(db):
    assert get_user_model().objects.count() == 0


def test_no_migration_or_fixture_creates_accounts_or_passwords():
    suspicious = re.compile(r"create_user|create_superuser|set_password|make_password|\"password\"|'password'")
    files = [*(ROOT.glob("*/migrations/*.py")), *(ROOT / "demo").rglob("*.*")]
    assert files
    for path in files:
        if path.suffix in (".py", ".json", ".yaml", ".yml", ".csv"):
            assert not suspicious.search(path.read_text(errors="replace")), path


def test_no_secret_is_written_in_the_code():
    # a quoted value that is not generated at that moment ($(...)) nor read from the environment
    literal = re.compile(r"""SECRET_KEY\s*=\s*["'][^"'$][^"']*["']|PASSWORD\s*[:=]\s*["'][^"'$]{6,}["']""")
    for path in [*app_sources(), ROOT / "docker-compose.yml", ROOT / "Dockerfile"]:
        assert not literal.search(path.read_text()), path
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def run_settings(module: str, **env_overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS")}
    env.update(DJANGO_SETTINGS_MODULE=module, **env_overrides)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_local_settings_have_no_default_secret_key():
    if (ROOT / ".env").exists():
        pytest.skip(".env (from make demo) provides a key here")
    result = run_settings("config.settings.local")
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr


def test_production_needs_its_allowed_hosts():
    import secrets

    keys = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(64), "TALLY_LEDGER_MAC_KEY": secrets.token_urlsafe(48)}
    result = run_settings("config.settings.production", **keys)
    assert result.returncode != 0 and "DJANGO_ALLOWED_HOSTS" in result.stderr
    ok = run_settings("config.settings.production", **keys, DJANGO_ALLOWED_HOSTS="tally.example")
    assert ok.returncode == 0, ok.stderr


def test_test_settings_key_is_random_per_process():
    keys = {
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)",
            ],
            cwd=ROOT,
            env={
                **{k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"},
                "DJANGO_SETTINGS_MODULE": "config.settings.test",
            },
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(keys) == 2 and all(len(k) >= 50 for k in keys)


def test_there_is_no_self_registration(client, db):
    routes = []

    def walk(patterns, prefix=""):
        for p in patterns:
            if hasattr(p, "url_patterns"):
                walk(p.url_patterns, prefix + str(p.pattern))
            else:
                routes.append((prefix + str(p.pattern), p.name or ""))

    walk(get_resolver().url_patterns)
    for route, name in routes:
        text = f"{route} {name}".lower()
        assert not re.search(r"sign.?up|register|registration|join|password_reset|users?/?$", text), route
    for url in ("/accounts/signup/", "/accounts/register/", "/api/users/", "/api/register/", "/signup/"):
        assert client.post(url, {"username": "eve", "password1": "x", "password2": "x"}).status_code in (403, 404)
    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert not [p for p in schema["paths"] if re.search(r"user|regist|signup|token", p)]
    assert get_user_model().objects.count() == 0


# --- no server-side fetch -------------------------------------------------------------------

NETWORK_MODULES = {"urllib.request", "urllib3", "requests", "httpx", "http.client", "aiohttp", "pycurl", "ftplib"}


def test_the_web_and_worker_code_fetch_no_url():
    """No import from a URL exists (CVE-2022-36551, CVE-2023-47116 were SSRF through one):
    no HTTP client is imported by the apps, and no request body takes a URL."""
    for path in app_sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                assert not any(name == m or name.startswith(m + ".") for m in NETWORK_MODULES), (path, name)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "urlopen",
                "urlretrieve",
                "from_pretrained",
                "hf_hub_download",
                "snapshot_download",
            ):
                raise AssertionError(f"{path}:{node.lineno} fetches")
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for name, component in schema["components"]["schemas"].items():
        for prop, spec in (component.get("properties") or {}).items():
            assert spec.get("format") != "uri" or not name.endswith("Request"), (name, prop)
            names_a_place = re.search(r"(^|_)(url|uri|href|link|path)(_|$)", prop)
            assert not (name.endswith("Request") and names_a_place), (name, prop)


# --- model files: only from the store, only safetensors --------------------------------------


def test_weights_outside_the_store_or_not_safetensors_are_refused(tmp_path):
    from training.ml.store import StoreError, store_path

    store = tmp_path / "store"
    store.mkdir()
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"x")
    (store / "link.safetensors").symlink_to(outside)
    (store / "dirlink").symlink_to(tmp_path)
    for relative in (
        "../outside.safetensors",
        str(outside),
        "/etc/passwd",
        "link.safetensors",
        "dirlink/outside.safetensors",
        "project-1/run-1.pt",
        "project-1/run-1.pkl",
        "project-1/run-1.bin",
        "project-1/run-1.safetensors/../../../outside.safetensors",
    ):
        with pytest.raises(StoreError):
            store_path(store, relative)
    assert store_path(store, "project-1/run-1-hashed.safetensors") == (store / "project-1/run-1-hashed.safetensors")


class Payload:
    """Unpickling this runs code: it would create the flag file."""

    def __init__(self, flag):
        self.flag = str(flag)

    def __reduce__(self):
        return (Path.touch, (Path(self.flag),))


def test_a_pickle_in_the_store_is_never_unpickled(tmp_path):
    from training.ml.store import load_weights

    store = tmp_path / "store"
    (store / "p").mkdir(parents=True)
    flag = tmp_path / "pwned"
    (store / "p" / "model.safetensors").write_bytes(pickle.dumps(Payload(flag)))
    with pytest.raises(Exception):  # noqa: B017 (safetensors raises its own header error)
        load_weights(store=store, relative="p/model.safetensors")
    assert not flag.exists()
    pickle.loads((store / "p" / "model.safetensors").read_bytes())  # the payload is real: unpickling runs it
    assert flag.exists()


def test_a_version_row_cannot_point_the_worker_elsewhere(world, settings):
    from training.ml.store import StoreError
    from training.models import ModelVersion
    from training.worker_cache import worker_cache

    version = ModelVersion.objects.get(project=world.a)
    worker_cache.clear()
    assert worker_cache.classifier(version) is not None  # it loads from the store as registered
    worker_cache.clear()
    for path in ("../../../etc/passwd", "/etc/hostname", "project-1/evil.pt"):
        ModelVersion.objects.filter(pk=version.pk).update(weights_path=path)
        with pytest.raises(StoreError):
            worker_cache.classifier(ModelVersion.objects.get(pk=version.pk))
    # a file swapped in the store is refused by its recorded hash
    ModelVersion.objects.filter(pk=version.pk).update(weights_path=version.weights_path)
    weights = Path(settings.TALLY_MODEL_STORE) / version.weights_path
    weights.write_bytes(weights.read_bytes()[:-1] + b" ")
    with pytest.raises(StoreError, match="sha256"):
        worker_cache.classifier(ModelVersion.objects.get(pk=version.pk))


def test_no_unsafe_deserialisation_in_the_code():
    for path in app_sources():
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
        assert not re.search(r"\bpickle\.loads?\(|\bjoblib\.load\(|allow_pickle\s*=\s*True|yaml\.load\(", text), path
