"""docker-compose.yml and the Dockerfile, read as data (no Docker engine runs on CI)."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SECRETISH = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE", re.IGNORECASE)
INTERPOLATED = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(:?\?[^}]*)?\}$")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def environment(service) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=value list form
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def test_the_four_services_exist(compose):
    assert {"web", "worker", "redis", "postgres"} <= set(compose["services"])


def test_web_and_workers_share_one_image_definition(compose):
    web, worker, embedder = (compose["services"][name] for name in ("web", "worker", "embedder"))
    assert web["build"] == worker["build"] == embedder["build"]
    assert web["build"]["context"] == "."
    dockerfile = ROOT / web["build"].get("dockerfile", "Dockerfile")
    assert dockerfile.is_file()
    assert web["image"] == worker["image"] == embedder["image"]
    # Nothing else builds its own image: the datastores are stock images.
    builders = {name for name, service in compose["services"].items() if "build" in service}
    assert builders == {"web", "worker", "embedder"}


def test_commands_run_the_real_processes_with_production_settings(compose):
    web, worker = compose["services"]["web"], compose["services"]["worker"]
    web_cmd = " ".join(web["command"]) if isinstance(web["command"], list) else web["command"]
    worker_cmd = " ".join(worker["command"]) if isinstance(worker["command"], list) else worker["command"]
    assert "gunicorn config.wsgi" in web_cmd
    assert "migrate" in web_cmd
    assert re.search(r"celery -A config worker\b.*-Q training,default\b.*\s-B\b", worker_cmd)  # runs first
    embedder = compose["services"]["embedder"]
    embedder_cmd = " ".join(embedder["command"]) if isinstance(embedder["command"], list) else embedder["command"]
    assert re.search(r"celery -A config worker\b.*-Q embedding\b", embedder_cmd)  # the pool on its own queue
    for service in (web, worker):
        env = environment(service)
        assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379/")
        assert service["env_file"] in (".env", [".env"])


def test_dependencies_wait_for_healthy_datastores(compose):
    services = compose["services"]
    for name in ("web", "worker"):
        depends = services[name]["depends_on"]
        assert set(depends) >= {"postgres", "redis"}
        for store in ("postgres", "redis"):
            assert depends[store]["condition"] == "service_healthy"
            assert "healthcheck" in services[store]


def test_datastores_keep_their_data(compose):
    postgres, redis = compose["services"]["postgres"], compose["services"]["redis"]
    pg_volume = next(v for v in postgres["volumes"] if v.endswith(":/var/lib/postgresql/data"))
    assert pg_volume.split(":")[0] in compose["volumes"]
    redis_cmd = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert re.search(r"--appendonly\s+yes", redis_cmd)
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_no_secret_value_is_written_in_the_file(compose):
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if value is None:
                continue
            value = str(value)
            if SECRETISH.search(key):
                assert INTERPOLATED.match(value), f"{name}.{key} has a literal value"
            # a URL's password must come from the environment as well
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                assert INTERPOLATED.match(password), f"{name}.{key} embeds a literal password"
    # the secrets file is neither committed nor copied into the image
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_missing_secrets_stop_compose_instead_of_defaulting(compose):
    text = (ROOT / "docker-compose.yml").read_text()
    for var in set(re.findall(r"\$\{(\w*(?:PASSWORD|SECRET)\w*)", text)):
        uses = re.findall(r"\$\{" + var + r"([^}]*)\}", text)
        assert all(use.startswith(":?") for use in uses), f"{var} must be required (${{{var}:?...}}), not defaulted"


def test_dockerfile_builds_the_cpu_torch_from_the_pinned_version():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, flags=re.MULTILINE)
    assert "download.pytorch.org/whl/cpu" in dockerfile
    assert "requirements.txt" in dockerfile
    # the version is read from requirements.txt, not repeated in an instruction
    instructions = "\n".join(line for line in dockerfile.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"torch==\d", instructions)
    assert re.search(r"^torch==\d+\.\d+\.\d+$", (ROOT / "requirements.txt").read_text(), flags=re.MULTILINE)
    assert re.search(r"^USER (?!root)\w+", dockerfile, flags=re.MULTILINE)


def test_the_application_runs_as_the_least_privilege_role_not_the_owner(compose):
    """Issue 15 item 8: web and worker connect as tally_app (SELECT and INSERT on the ledger);
    only the web's start-up migrates and grants, as the owner."""
    for name in ("web", "worker"):
        env = compose["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://tally_app:"), name
    command = compose["services"]["web"]["command"]
    assert "db_app_role tally_app" in command
    assert command.index("migrate") < command.index("db_app_role") < command.index("exec gunicorn")
    assert "DATABASE_URL=$$TALLY_OWNER_DATABASE_URL python manage.py migrate" in command  # $$: compose escape
