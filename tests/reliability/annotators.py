"""Simulated annotators over HTTP (stdlib only), behaving like the labeling page: claim the
next text, answer it, and retry an answer that got no answer or a 5xx with the SAME
idempotency key until the server acknowledges it (frontend/static/frontend/label.js)."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field


@dataclass
class Tally:
    """What one simulated annotator saw."""

    accepted: dict = field(default_factory=dict)  # idempotency key -> annotation id (201)
    statuses: dict = field(default_factory=dict)  # HTTP status -> count (0: no answer)
    latencies: list = field(default_factory=list)  # seconds of every answered request
    by_kind: dict = field(default_factory=dict)  # "claim", "heartbeat", "submit" -> [seconds]
    retries: int = 0
    gave_up: list = field(default_factory=list)  # (key, last status) never acknowledged
    exhausted: bool = False

    def count(self, status):
        self.statuses[status] = self.statuses.get(status, 0) + 1


def request(base_url, method, path, token, body=None, timeout=30.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base_url + path, data=data, method=method)  # noqa: S310 (127.0.0.1)
    req.add_header("Authorization", f"Token {token}")
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, None, time.perf_counter() - started
    elapsed = time.perf_counter() - started
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = None
    return status, payload, elapsed


class Annotator(threading.Thread):
    def __init__(
        self, *, base_url, token, slug, label_ids, stop: threading.Event, pause=(0.0, 0.0), seed=0, heartbeat=False
    ):
        super().__init__(daemon=True)
        self.heartbeat = heartbeat
        self.base_url, self.token, self.slug = base_url, token, slug
        self.label_ids = label_ids
        self.stop_event = stop
        self.pause = pause
        self.rng = random.Random(seed)  # noqa: S311
        self.tally = Tally()

    def call(self, method, path, body=None, kind="other"):
        status, payload, elapsed = request(self.base_url, method, path, self.token, body)
        self.tally.count(status)
        if status:
            self.tally.latencies.append(elapsed)
            self.tally.by_kind.setdefault(kind, []).append(elapsed)
        return status, payload

    def retrying(self, method, path, body, *, kind="other", deadline_s=60.0):
        """Until acknowledged: no answer, 5xx or 429 are retried with backoff (same body)."""
        delay, deadline = 0.2, time.monotonic() + deadline_s
        while True:
            status, payload = self.call(method, path, body, kind)
            if status and status < 500 and status != 429:
                return status, payload
            if time.monotonic() > deadline:
                return status, payload
            self.tally.retries += 1
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def run(self):
        while not self.stop_event.is_set():
            status, attempt = self.retrying("POST", f"/api/projects/{self.slug}/queue/next/", {}, kind="claim")
            if status == 204:
                self.tally.exhausted = True
                return
            if status != 200:
                time.sleep(0.5)
                continue
            if self.heartbeat:  # the page's first heartbeat: the text is on screen
                self.call("POST", f"/api/attempts/{attempt['id']}/heartbeat/", {}, "heartbeat")
            if self.pause[1]:
                time.sleep(self.rng.uniform(*self.pause))
            key = str(uuid.uuid4())
            body = {"labels": [self.rng.choice(self.label_ids)], "idempotency_key": key}
            status, annotation = self.retrying("POST", f"/api/attempts/{attempt['id']}/submit/", body, kind="submit")
            if status == 201:
                self.tally.accepted[key] = annotation["id"]
            else:
                self.tally.gave_up.append((key, status))


def run_annotators(annotators, seconds, during=None):
    """Start them, call during() (a fault) if given, stop after `seconds` in all."""
    started = time.monotonic()
    for a in annotators:
        a.start()
    if during is not None:
        during()
    remaining = seconds - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)
    annotators[0].stop_event.set()
    for a in annotators:
        a.join(120)
    return time.monotonic() - started
