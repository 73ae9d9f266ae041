"""The systems under test: how to install, start, stop and talk to each.

Label Studio ("ls"): its own virtual environment, `label-studio init` / `label-studio start`
(Django's runserver, its default SQLite), exactly as its docs install it.
Tally on SQLite ("tally-sqlite"): the same server (runserver) and database engine, like for like.
Tally on PostgreSQL ("tally-pg"): gunicorn with 2 x cores + 1 sync workers, as deployed.

Every system offers the same verbs to the workload (workload.py): new_project, import_file,
next_task, submit, skip, export. Only what a verb does over HTTP is timed; the setup around
it (users, tokens, projects, memberships) is not.
"""

import csv
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .httpclient import Http, HttpError, multipart
from .processes import Server, free_port, tree_memory

ROOT = Path(__file__).resolve().parent.parent.parent
LABELS = ["World", "Sports", "Business", "Sci/Tech"]
IMPORT_POLL_SECONDS = 0.05
IMPORT_TIMEOUT_SECONDS = 900


def choose_label(task_key: int) -> str:
    """The label a simulated annotator picks: fixed per task, the same rule on both systems."""
    return LABELS[task_key % len(LABELS)]


def base_env(home: Path) -> dict:
    """A minimal environment: nothing of the caller's (DATABASE_URL, DEBUG, USERNAME...)
    leaks into a server and changes how it runs."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": str(home),
    }
    home.mkdir(parents=True, exist_ok=True)
    return env


def run_checked(argv: list[str], *, env: dict, cwd: Path, stdin: str | None = None, timeout: float = 600) -> str:
    result = subprocess.run(  # noqa: S603 -- argv built by the harness, no shell
        argv, env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} ... failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


@dataclass
class Project:
    key: str  # Tally: slug; Label Studio: numeric id as a string
    label_ids: dict = field(default_factory=dict)  # Tally only: label name -> id
    tasks: int = 0


@dataclass
class Task:
    key: int  # Tally: attempt id; Label Studio: task id
    example: int  # Tally: example id; Label Studio: task id


class System:
    key = ""
    title = ""

    def __init__(self, workdir: Path, annotators: int):
        self.workdir = workdir / self.key
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.annotators = annotators
        self.admin_token = ""
        self.annotator_tokens: list[str] = []
        self.servers: list[Server] = []
        self.port = 0
        self.base_url = ""

    # --- lifecycle (untimed) ---
    def prepare(self) -> dict:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers = []

    def cleanup(self, *, keep_data: bool = False) -> None:
        self.stop()

    def memory(self) -> dict:
        """The web server's process tree (the thing that answered the measured calls)."""
        return tree_memory(self.servers[0].pid)

    def versions(self) -> dict:
        return {}

    # --- clients ---
    def auth_header(self, token: str) -> str:
        return f"Token {token}"

    def admin_http(self) -> Http:
        return Http(self.base_url, auth_header=self.auth_header(self.admin_token))

    def annotator_http(self, i: int) -> Http:
        return Http(self.base_url, auth_header=self.auth_header(self.annotator_tokens[i]))

    # --- the verbs ---
    def new_project(self, name: str) -> Project:
        raise NotImplementedError

    def import_file(self, project: Project, path: Path) -> dict:
        raise NotImplementedError

    def next_task(self, http: Http, project: Project) -> tuple[Task | None, float]:
        raise NotImplementedError

    def submit(self, http: Http, project: Project, task: Task) -> float:
        raise NotImplementedError

    def skip(self, http: Http, project: Project, task: Task) -> float:
        raise NotImplementedError

    def export(self, http: Http, project: Project, kind: str) -> tuple[bytes, float]:
        raise NotImplementedError


# --- Label Studio ---------------------------------------------------------------------------


def ls_label_config() -> str:
    choices = "".join(f'<Choice value="{name}"/>' for name in LABELS)
    return (
        '<View><Text name="text" value="$text"/>'
        f'<Choices name="label" toName="text" choice="single">{choices}</Choices></View>'
    )


class LabelStudio(System):
    key = "ls"
    title = "Label Studio (runserver, SQLite)"

    def __init__(self, workdir: Path, annotators: int, *, venv: Path):
        super().__init__(workdir, annotators)
        self.venv = venv
        self.bin = venv / "bin" / "label-studio"
        self.python = venv / "bin" / "python"
        self.data_dir = self.workdir / "data"

    def env(self) -> dict:
        env = base_env(self.workdir / "home")
        env["LABEL_STUDIO_BASE_DATA_DIR"] = str(self.data_dir)
        return env

    def prepare(self) -> dict:
        if not self.bin.exists():
            raise RuntimeError(f"Label Studio is not installed at {self.venv} (scripts/bench_peers.sh installs it)")
        admin_email = "bench-admin@bench.invalid"
        self.admin_token = secrets.token_hex(20)
        env = self.env()
        # The documented CLI: `label-studio init --username --password --user-token`; the
        # secrets go through its LABEL_STUDIO_* variables rather than the command line.
        env.update(
            LABEL_STUDIO_USERNAME=admin_email,
            LABEL_STUDIO_PASSWORD=secrets.token_urlsafe(18),
            LABEL_STUDIO_USER_TOKEN=self.admin_token,
        )
        start = time.monotonic()
        run_checked(
            [str(self.bin), "init", "-q", "--no-browser", "--enable-legacy-api-token"], env=env, cwd=self.workdir
        )
        init_seconds = time.monotonic() - start
        accounts = [
            {
                "email": f"bench-annotator-{i}@bench.invalid",
                "password": secrets.token_urlsafe(18),
                "token": secrets.token_hex(20),
            }
            for i in range(self.annotators)
        ]
        run_checked(
            [str(self.python), "-P", str(Path(__file__).with_name("ls_users.py"))],
            env=self.env(),
            cwd=self.workdir,
            stdin=json.dumps(accounts),
        )
        self.annotator_tokens = [a["token"] for a in accounts]
        return {"init_seconds": init_seconds}

    def start(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        server = Server(
            "label-studio",
            [str(self.bin), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(self.port)],
            env=self.env(),
            cwd=self.workdir,
            log_path=self.workdir / "server.log",
            port=self.port,
        ).start()
        self.servers = [server]
        server.wait_http("/health", timeout=180)

    def versions(self) -> dict:
        out = run_checked(
            [
                str(self.python),
                "-c",
                "import label_studio, django, sqlite3; "
                "print(label_studio.__version__, django.__version__, sqlite3.sqlite_version)",
            ],
            env=self.env(),
            cwd=self.workdir,
        ).split()
        return {
            "label_studio": out[0],
            "ls_django": out[1],
            "ls_sqlite": out[2],
            "ls_server": "Django runserver (label-studio start)",
        }

    def new_project(self, name: str) -> Project:
        reply = self.admin_http().request(
            "POST", "/api/projects/", json_body={"title": name[:50], "label_config": ls_label_config()}
        )
        return Project(key=str(reply.json()["id"]))

    def import_file(self, project: Project, path: Path) -> dict:
        body, content_type = multipart({}, {"file": (path.name, path.read_bytes(), "text/csv")})
        http = Http(self.base_url, auth_header=self.auth_header(self.admin_token), timeout=IMPORT_TIMEOUT_SECONDS)
        reply = http.request("POST", f"/api/projects/{project.key}/import", body=body, content_type=content_type)
        data = reply.json()
        project.tasks = data["task_count"]
        return {
            "measured": True,
            "endpoint": "POST /api/projects/<id>/import (multipart, synchronous)",
            "seconds": reply.seconds,
            "tasks": data["task_count"],
        }

    def next_task(self, http: Http, project: Project) -> tuple[Task | None, float]:
        reply = http.request("GET", f"/api/projects/{project.key}/next/", expect=(200, 404))
        if reply.status == 404:  # "no more tasks" for this user
            return None, reply.seconds
        task_id = reply.json()["id"]
        return Task(key=task_id, example=task_id), reply.seconds

    def submit(self, http: Http, project: Project, task: Task) -> float:
        result = [
            {
                "from_name": "label",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": [choose_label(task.example)]},
            }
        ]
        reply = http.request(
            "POST", f"/api/tasks/{task.key}/annotations/", json_body={"result": result, "lead_time": 1.0}, expect=(201,)
        )
        return reply.seconds

    def skip(self, http: Http, project: Project, task: Task) -> float:
        reply = http.request(
            "POST",
            f"/api/tasks/{task.key}/annotations/",
            query={"was_cancelled": "1"},
            json_body={"result": [], "was_cancelled": True, "lead_time": 1.0},
            expect=(201,),
        )
        return reply.seconds

    def export(self, http: Http, project: Project, kind: str) -> tuple[bytes, float]:
        reply = http.request("GET", f"/api/projects/{project.key}/export", query={"exportType": kind.upper()})
        return reply.body, reply.seconds


# --- Tally ----------------------------------------------------------------------------------


class Tally(System):
    database = ""
    title = ""

    def __init__(self, workdir: Path, annotators: int, *, redis_url: str, run_id: str, python: str):
        super().__init__(workdir, annotators)
        self.redis_url = redis_url
        self.queue = f"bench-peers-{run_id}-{self.key}"
        self.python = python
        self.secret_key = secrets.token_urlsafe(64)
        self.ledger_mac_key = secrets.token_urlsafe(48)  # one for every process of the run
        self.import_api = True

    def database_url(self) -> str:
        raise NotImplementedError

    def env(self) -> dict:
        env = base_env(self.workdir / "home")
        env.update(
            DJANGO_SETTINGS_MODULE="bench.peers.settings",
            DJANGO_SECRET_KEY=self.secret_key,
            TALLY_LEDGER_MAC_KEY=self.ledger_mac_key,
            DATABASE_URL=self.database_url(),
            REDIS_URL=self.redis_url,
            CACHE_KEY_PREFIX=self.queue,
            BENCH_CELERY_QUEUE=self.queue,
            TALLY_MEDIA_ROOT=str(self.workdir / "media"),
        )
        return env

    def prepare(self) -> dict:
        start = time.monotonic()
        run_checked([self.python, "manage.py", "migrate", "--noinput", "-v", "0"], env=self.env(), cwd=ROOT)
        migrate_seconds = time.monotonic() - start
        users = json.loads(
            run_checked(
                [self.python, "-m", "bench.peers.tally_setup", "users", "--annotators", str(self.annotators)],
                env=self.env(),
                cwd=ROOT,
            )
        )
        self.admin_token = users["admin"]["token"]
        self.annotator_tokens = [a["token"] for a in users["annotators"]]
        self.annotator_names = [a["username"] for a in users["annotators"]]
        return {"migrate_seconds": migrate_seconds}

    def web_argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        web = Server(
            f"tally-{self.key}",
            self.web_argv(),
            env=self.env(),
            cwd=ROOT,
            log_path=self.workdir / "server.log",
            port=self.port,
        )
        worker = Server(
            f"tally-{self.key}-celery",
            [
                self.python,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                self.queue,
                "-P",
                "solo",
                "-c",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
                "-n",
                f"{self.queue}@%h",
            ],
            env=self.env(),
            cwd=ROOT,
            log_path=self.workdir / "celery.log",
        )
        self.servers = [web.start(), worker.start()]
        web.wait_http("/api/projects/", timeout=120)
        self._wait_worker_ready(worker)

    def _wait_worker_ready(self, worker: Server, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not worker.alive():
                raise RuntimeError(f"the Celery worker exited:\n{worker.log_tail()}")
            if " ready." in worker.log_path.read_text(errors="replace"):
                return
            time.sleep(0.25)
        raise RuntimeError(f"the Celery worker was not ready within {timeout:.0f} s:\n{worker.log_tail()}")

    def worker_memory(self) -> dict | None:
        return tree_memory(self.servers[1].pid) if len(self.servers) > 1 else None

    def cleanup(self, *, keep_data: bool = False) -> None:
        self.stop()
        try:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(match=f"*{self.queue}*", count=1000))
            if keys:
                client.delete(*keys)
        except Exception as exc:  # noqa: BLE001 -- cleanup must go on
            print(f"warning: could not delete the run's Redis keys: {exc}", file=sys.stderr)

    def versions(self) -> dict:
        code = (
            "import django, rest_framework, gunicorn, sqlite3, sys; "
            "print(django.__version__, rest_framework.__version__, gunicorn.__version__, "
            "sqlite3.sqlite_version, sys.version.split()[0])"
        )
        out = run_checked([self.python, "-c", code], env=self.env(), cwd=ROOT).split()
        commit = subprocess.run(  # noqa: S603,S607
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603,S607
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return {
            "tally_commit": commit + ("+dirty" if dirty else ""),
            "django": out[0],
            "djangorestframework": out[1],
            "gunicorn": out[2],
            "sqlite": out[3],
            "python": out[4],
        }

    def new_project(self, name: str) -> Project:
        admin = self.admin_http()
        data = admin.request("POST", "/api/projects/", json_body={"name": name, "labels": LABELS}).json()
        project = Project(key=data["slug"], label_ids={label["name"]: label["id"] for label in data["labels"]})
        run_checked(  # untimed set-up, like the users: the members API works by invitation only
            [self.python, "-m", "bench.peers.tally_setup", "members", "--project", project.key, *self.annotator_names],
            env=self.env(),
            cwd=ROOT,
        )
        return project

    def import_file(self, project: Project, path: Path) -> dict:
        """The import API (issue 2, annotation/apis_imports.py): POST /api/projects/<slug>/imports/
        takes a multipart upload and answers 202 with an ImportBatch at once; a Celery worker
        imports it. Timed from the upload's first byte until GET .../imports/<id>/ shows the batch
        finished (polled every 50 ms, so up to 50 ms of the figure is polling). A build without
        that API (404/405) falls back to seeding the rows untimed, and the row says so."""
        http = Http(self.base_url, auth_header=self.auth_header(self.admin_token), timeout=IMPORT_TIMEOUT_SECONDS)
        fields = {"file_format": "csv", "text_column": "text", "label_column": "label"}
        body, content_type = multipart(fields, {"file": (path.name, path.read_bytes(), "text/csv")})
        endpoint = f"/api/projects/{project.key}/imports/"
        start = time.perf_counter()
        try:
            reply = http.request("POST", endpoint, body=body, content_type=content_type, expect=(200, 201, 202))
        except HttpError as exc:
            if exc.status not in (404, 405):
                raise
            return self._seed_without_api(project, path, reason=f"POST {endpoint} answered {exc.status}")
        batch = reply.json()
        # The batch's own URL: the Location header of the 202, else built like the API builds it.
        status_path = reply.headers.get("Location") or f"{endpoint}{batch['id']}/"
        if status_path.startswith("http"):
            status_path = "/" + status_path.split("/", 3)[3]
        while batch.get("status") not in ("succeeded", "failed"):
            if time.perf_counter() - start > IMPORT_TIMEOUT_SECONDS:
                raise RuntimeError(f"the import did not finish within {IMPORT_TIMEOUT_SECONDS} s: {batch}")
            time.sleep(IMPORT_POLL_SECONDS)
            batch = http.request("GET", status_path).json()
        seconds = time.perf_counter() - start
        if batch["status"] != "succeeded":
            raise RuntimeError(f"the import failed: {batch.get('error') or batch}")
        project.tasks = batch.get("rows_imported", 0)
        return {
            "measured": True,
            "endpoint": f"POST {endpoint} (multipart), then GET {status_path} until finished".replace(
                project.key, "<slug>"
            ),
            "seconds": seconds,
            "tasks": batch.get("rows_imported"),
            "duplicates": batch.get("rows_duplicate"),
            "skipped": batch.get("rows_skipped"),
        }

    def _seed_without_api(self, project: Project, path: Path, *, reason: str) -> dict:
        self.import_api = False
        out = json.loads(
            run_checked(
                [self.python, "-m", "bench.peers.tally_setup", "seed", "--project", project.key, "--file", str(path)],
                env=self.env(),
                cwd=ROOT,
            )
        )
        project.tasks = out["examples"]
        return {
            "measured": False,
            "reason": f"no import API in this build ({reason}); rows seeded untimed",
            "tasks": out["examples"],
        }

    def next_task(self, http: Http, project: Project) -> tuple[Task | None, float]:
        reply = http.request("POST", f"/api/projects/{project.key}/queue/next/", json_body={}, expect=(200, 204))
        if reply.status == 204:
            return None, reply.seconds
        data = reply.json()
        return Task(key=data["id"], example=data["example"]["id"]), reply.seconds

    def submit(self, http: Http, project: Project, task: Task) -> float:
        body = {"labels": [project.label_ids[choose_label(task.example)]], "idempotency_key": uuid.uuid4().hex}
        return http.request("POST", f"/api/attempts/{task.key}/submit/", json_body=body, expect=(201,)).seconds

    def skip(self, http: Http, project: Project, task: Task) -> float:
        return http.request("POST", f"/api/attempts/{task.key}/skip/", json_body={}, expect=(200,)).seconds

    def export(self, http: Http, project: Project, kind: str) -> tuple[bytes, float]:
        reply = http.request("GET", f"/api/projects/{project.key}/export/", query={"file_format": kind})
        return reply.body, reply.seconds


class TallySqlite(Tally):
    key = "tally-sqlite"
    title = "Tally (runserver, SQLite)"

    def database_url(self) -> str:
        return f"sqlite:///{self.workdir / 'tally.sqlite3'}"

    def web_argv(self) -> list[str]:
        # The very server Label Studio runs on: Django's threaded runserver, no autoreload.
        return [self.python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"]

    def versions(self) -> dict:
        return dict(super().versions(), tally_sqlite_server="Django runserver")


class TallyPostgres(Tally):
    key = "tally-pg"
    title = "Tally (gunicorn, PostgreSQL)"

    def __init__(self, *args, pg_url: str, **kwargs):
        self.pg_url = pg_url
        super().__init__(*args, **kwargs)
        self.workers = 2 * (os.cpu_count() or 1) + 1

    def database_url(self) -> str:
        return self.pg_url

    def env(self) -> dict:
        # The one deployment knob set here, as any gunicorn deployment of Django sets it:
        # persistent database connections (config/settings/base.py reads DB_CONN_MAX_AGE; its
        # default 0 opens a new PostgreSQL connection, a forked backend, for every request).
        return dict(super().env(), DB_CONN_MAX_AGE="60")

    def _admin_connection(self):
        import psycopg

        base, _, name = self.pg_url.rpartition("/")
        return psycopg.connect(f"{base}/postgres", autocommit=True), name

    def prepare(self) -> dict:
        conn, name = self._admin_connection()
        with conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return super().prepare()

    def cleanup(self, *, keep_data: bool = False) -> None:
        super().cleanup()
        if keep_data:
            print(f"kept the database {self.pg_url}", file=sys.stderr)
            return
        try:
            conn, name = self._admin_connection()
            with conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001
            print(f"warning: could not drop the benchmark database: {exc}", file=sys.stderr)

    def web_argv(self) -> list[str]:
        return [
            self.python,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            "sync",
            "--timeout",
            "120",
            "--access-logfile",
            "-",
        ]

    def versions(self) -> dict:
        conn, _ = self._admin_connection()
        with conn:
            server_version = conn.execute("SHOW server_version").fetchone()[0]
        return dict(super().versions(), postgresql=server_version, gunicorn_workers=self.workers)


def count_records(body: bytes, kind: str) -> int:
    if kind == "json":
        return len(json.loads(body))
    return max(sum(1 for _ in csv.reader(io.StringIO(body.decode("utf-8")))) - 1, 0)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
