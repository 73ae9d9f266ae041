"""Server processes the benchmark starts, and the guarantee that it stops every one of them.

Each server starts in a session (process group) of its own, so stopping it stops its children
too (gunicorn workers, runserver's threads, a Celery worker's pool). Every process started
here is registered; `stop_all()` runs at exit, on SIGTERM/SIGINT/SIGHUP and from the shell
script's trap, whatever happened.
"""

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

_RUNNING: list["Server"] = []
# scripts/bench_peers.sh names a file here; it holds the process groups still running, so the
# script's trap can stop them even if this Python process is killed outright (SIGKILL, OOM).
PIDFILE = os.environ.get("BENCH_PEERS_PIDFILE")


def _write_pidfile() -> None:
    if PIDFILE:
        with contextlib.suppress(OSError):
            Path(PIDFILE).write_text("".join(f"{s.proc.pid}\n" for s in _RUNNING if s.proc is not None))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, name: str, argv: list[str], *, env: dict, cwd: Path, log_path: Path, port: int | None = None):
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 -- lives as long as the process
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        _RUNNING.append(self)
        _write_pidfile()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_http(self, path: str = "/", timeout: float = 120.0) -> float:
        """Wait until the server answers HTTP on its port (any status below 500); the seconds it took."""
        start = time.monotonic()
        url = f"http://127.0.0.1:{self.port}{path}"
        while time.monotonic() - start < timeout:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 -- loopback URL built above
                    if response.status < 500:
                        return time.monotonic() - start
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return time.monotonic() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, grace: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # The group may outlive its leader (a worker that ignored SIGTERM): kill what is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self in _RUNNING:
            _RUNNING.remove(self)
        _write_pidfile()


def stop_all() -> None:
    for server in reversed(list(_RUNNING)):
        with contextlib.suppress(Exception):
            server.stop(grace=10)


def _on_signal(signum, frame):
    # Unwind through every `finally` (servers stopped, temporary databases dropped).
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)


# --- memory of a process tree, from /proc ---------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def process_tree(root: int) -> list[int]:
    children = _children_map()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _kib(path: str, field: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory(root: int) -> dict:
    """Resident memory of a process and all its descendants, in MiB.

    rss_mib sums VmRSS, which counts pages that forked workers share once per worker (it
    overstates a gunicorn master and its workers); pss_mib sums the proportional set size
    from smaps_rollup, which splits shared pages among their sharers: the fairer total.
    """
    pids = process_tree(root)
    rss = sum(_kib(f"/proc/{pid}/status", "VmRSS") for pid in pids)
    pss = sum(_kib(f"/proc/{pid}/smaps_rollup", "Pss") for pid in pids)
    return {"processes": len(pids), "rss_mib": rss / 1024, "pss_mib": pss / 1024 if pss else None}
