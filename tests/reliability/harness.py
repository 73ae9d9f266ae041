"""Processes the fault tests start and own: a Redis server on a port of its own, Celery
workers (with fault hooks), gunicorn, and a TCP proxy in front of PostgreSQL that a test can
cut. Everything binds to 127.0.0.1, and every process is stopped by the fixture that made it
(never the machine's shared Redis or PostgreSQL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from tests.support.processes import ROOT, subprocess_env
from tests.support.waiting import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen | None, sig=signal.SIGTERM, timeout=20):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class OwnRedis:
    """redis-server without persistence, like a default Redis that loses its queues on restart."""

    def __init__(self, log_dir: Path, port: int | None = None):
        self.port = port or free_port()
        self.log_dir = log_dir
        self.proc = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)

    def start(self):
        log = open(self.log_dir / f"redis-{self.port}.log", "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._ping, 20, what=f"redis on {self.port}")

    def _ping(self):
        try:
            return self.client().ping()
        except Exception:  # noqa: BLE001
            return False

    def crash(self):
        """SIGKILL: whatever it held in memory is gone."""
        _stop(self.proc, signal.SIGKILL)

    def restart(self, down_seconds: float = 0.0):
        self.crash()
        time.sleep(down_seconds)
        self.start()

    def stop(self):
        _stop(self.proc)


class Worker:
    """A Celery worker subprocess (solo pool: the task runs in the process a test may kill)."""

    def __init__(self, name: str, log_dir: Path, env: dict, queues="training,default,embedding", beat=False):
        self.log_path = log_dir / f"worker-{name}.log"
        self.log = open(self.log_path, "a")  # noqa: SIM115
        args = [
            sys.executable,
            str(ROOT / "tests" / "reliability" / "worker_main.py"),
            "worker",
            "-Q",
            queues,
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
            f"{name}-{os.getpid()}@%h",
        ]
        if beat:
            args += ["-B", "-s", str(log_dir / f"beat-{name}")]
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._ready, 90, what=f"worker {name} ready (log: {self.log_path})")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited: {self.log_path.read_text()[-3000:]}")
        return " ready." in self.log_path.read_text()

    def output(self) -> str:
        return self.log_path.read_text()

    def kill(self):
        _stop(self.proc, signal.SIGKILL)

    def stop(self):
        _stop(self.proc)
        self.log.close()


def memory_mib(pid: int) -> dict:
    """Resident memory of a process now (VmRSS) and at its peak (VmHWM), in MiB (Linux /proc)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return {"rss": fields["VmRSS"], "peak": fields["VmHWM"]}


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (gunicorn's master: its worker processes)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


class Gunicorn:
    def __init__(self, log_dir: Path, env: dict, workers=2, threads=4):
        self.port = free_port()
        self.log_path = log_dir / f"gunicorn-{self.port}.log"
        self.log = open(self.log_path, "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--timeout",
                "60",
                "--access-logfile",
                "-",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._up, 60, what=f"gunicorn on {self.port} (log: {self.log_path})")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited: {self.log_path.read_text()[-3000:]}")
        try:
            return urllib.request.urlopen(self.url + "/accounts/login/", timeout=2).status == 200  # noqa: S310
        except Exception:  # noqa: BLE001
            return False

    def stop(self):
        _stop(self.proc)
        self.log.close()


class TcpProxy:
    """127.0.0.1:port -> target. cut() drops every connection and refuses new ones until
    restore(): to the processes behind it, the database went away."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.up = threading.Event()
        self.stopping = False
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.listener = None
        self.cuts = 0
        self.restore()

    def _listen(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            with self.lock:
                self.sockets.discard(src)
                self.sockets.discard(dst)

    def cut(self):
        """New connections are accepted and closed at once (the client sees the server hang up)."""
        self.up.clear()
        self.cuts += 1
        with self.lock:
            for s in list(self.sockets):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def restore(self):
        self.up.set()
        if self.listener is None:
            self._listen()

    def close(self):
        self.cut()
        if self.listener is not None:
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None


def wait_for_other_sessions_to_end(timeout=15.0) -> None:
    """Backends of processes we stopped can outlive them by a moment; the test database can
    only be dropped at the end of the session once they are gone."""
    from django.db import connection

    def alone():
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cur.fetchone()[0] == 0

    try:
        wait_for(alone, timeout, 0.2, "the stopped processes' database sessions to end")
    except AssertionError:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pid, application_name, client_addr, client_port, state, backend_start, query "
                "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            print("still connected:", cur.fetchall(), file=sys.stderr)


def env_for(**extra) -> dict:
    """A subprocess environment on the test database (tests/support/processes.py), plus `extra`."""
    return subprocess_env(**{k: str(v) for k, v in extra.items()})
