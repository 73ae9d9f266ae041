"""A real Celery worker for the test that asks for one, consuming the default and training
queues of the test Redis database and writing to the test PostgreSQL database.

Each test gets a worker of its own, started on queues emptied first and stopped when the test
ends: what other tests enqueued (their projects' training runs, imports) can neither keep it
busy nor run between its steps, and it runs nothing while other tests run."""

import itertools
import os
import subprocess
import sys

import pytest

from .processes import ROOT, subprocess_env
from .waiting import wait_for

QUEUES = ("training", "default", "embedding")  # in the order a worker serves them: runs first
_names = itertools.count(1)


def queued_messages() -> int:
    from config.celery_app import app

    with app.connection_for_read() as conn:
        return sum(conn.default_channel.queue_declare(queue).message_count for queue in QUEUES)


def purge_queues() -> None:
    from config.celery_app import app

    with app.connection_for_write() as conn:
        for queue in QUEUES:
            conn.default_channel.queue_purge(queue)


def worker_idle(hostname: str) -> bool:
    """The worker answers (a solo worker running a task cannot), runs and holds nothing, and
    nothing waits in its queues."""
    from config.celery_app import app

    inspect = app.control.inspect(destination=[hostname], timeout=1)
    active, reserved = inspect.active() or {}, inspect.reserved() or {}
    if hostname not in active or hostname not in reserved:
        return False
    return not active[hostname] and not reserved[hostname] and queued_messages() == 0


class CeleryWorker:
    def __init__(self, log_dir):
        from config.celery_app import app

        self.log_path = log_dir / "worker.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115
        name = f"test-{os.getpid()}-{next(_names)}"
        # Celery expands %h to the host name; the name to address it by is known once it answers.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", ",".join(QUEUES), "-P", "solo",
             "-c", "1", "--without-gossip", "--without-mingle", "-l", "INFO", "-n", f"{name}@%h"],
            cwd=ROOT,
            env=subprocess_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

        def answering():
            if self.proc.poll() is not None:
                raise RuntimeError(f"Celery worker exited early:\n{self.log_path.read_text()}")
            replies = app.control.inspect(timeout=1).ping() or {}
            return next((host for host in replies if host.startswith(f"{name}@")), None)

        try:
            self.hostname = wait_for(answering, timeout=90, interval=0.5, what=f"the worker (log: {self.log_path})")
        except AssertionError:
            self.stop()
            raise

    def idle(self) -> bool:
        return worker_idle(self.hostname)

    def wait_idle(self, timeout: float = 60.0) -> None:
        wait_for(self.idle, timeout, 0.3, what=f"the worker to finish its tasks (log: {self.log_path})")

    def stop(self) -> None:
        self.proc.terminate()  # warm shutdown: the task in hand finishes first
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
def celery_worker(transactional_db, tmp_path):
    """A worker of this test's own (the worker reads what the test committed, hence
    transactional_db; stopped before the database is flushed)."""
    purge_queues()
    worker = CeleryWorker(tmp_path)
    yield worker
    worker.stop()
