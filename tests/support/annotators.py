"""Simulated annotators: through annotation.services (label_next, and work() on an explicit
clock), through the REST API in-process (label_through_api), and over HTTP in threads
(Annotator, as the labeling page behaves). Plus the toy data set they answer from."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.urls import reverse

from annotation import services as annotation_services
from annotation.models import Label

POSITIVE = ["good", "great", "excellent", "wonderful", "superb", "lovely", "delightful", "brilliant"]
NEGATIVE = ["bad", "awful", "terrible", "horrible", "dreadful", "poor", "boring", "dismal"]
FILLER = ["the film was", "this book is", "our dinner was", "that concert felt", "the service was"]


def toy_texts(n: int = 40) -> dict[str, str]:
    """{text: "positive"|"negative"}: separable by a sentiment word."""
    out = {}
    i = 0
    while len(out) < n:
        word_set, label = (POSITIVE, "positive") if i % 2 == 0 else (NEGATIVE, "negative")
        text = f"{FILLER[i % len(FILLER)]} {word_set[(i // 2) % len(word_set)]} number {i}"
        out[text] = label
        i += 1
    return out


# --- through annotation.services ------------------------------------------------------------


def label_next(project, annotator, truth, n: int | None = 1):
    """Claim what the queue offers and answer it, `n` times (None: until the queue is empty).
    `truth` is {text: label name}, or a function from a text to its label names."""
    answer = truth if callable(truth) else (lambda text: [truth[text]])
    labels = dict(Label.objects.filter(project=project).values_list("name", "id"))
    done = []
    while n is None or len(done) < n:
        attempt = annotation_services.claim_next(project=project, annotator=annotator)
        if attempt is None:
            break
        done.append(
            annotation_services.annotation_submit(
                attempt_id=attempt.pk,
                annotator=annotator,
                label_ids=[labels[name] for name in answer(attempt.example.text)],
            )
        )
    return done


def work(project, annotator, *, start, active_seconds=10, label=None, key=None, skip=False):
    """Claim, show, heartbeat every 5 s for `active_seconds`, then submit (or skip). Returns
    (attempt, annotation or None) and the moment it finished."""
    attempt = annotation_services.claim_next(project=project, annotator=annotator, now=start)
    annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=start)
    t = 0
    while t + 5 <= active_seconds:
        t += 5
        annotation_services.attempt_heartbeat(
            attempt_id=attempt.pk, annotator=annotator, now=start + timedelta(seconds=t)
        )
    end = start + timedelta(seconds=active_seconds)
    if skip:
        annotation_services.attempt_skip(attempt_id=attempt.pk, annotator=annotator, now=end)
        attempt.refresh_from_db()
        return attempt, None
    label = label or project.labels.first()
    annotation = annotation_services.annotation_submit(
        attempt_id=attempt.pk, annotator=annotator, label_ids=[label.pk], idempotency_key=key, now=end
    )
    attempt.refresh_from_db()
    return attempt, annotation


# --- through the REST API, in-process -------------------------------------------------------


def label_through_api(client, project, truth: dict[str, str], n: int) -> list[int]:
    """Claim and answer `n` texts with an API client; the ids of the examples offered, in order."""
    labels = dict(Label.objects.filter(project=project).values_list("name", "id"))
    queue_url = reverse("annotation:queue-next", kwargs={"slug": project.slug})
    offered = []
    for _ in range(n):
        claim = client.post(queue_url, {}, format="json")
        assert claim.status_code == 200, claim.content
        attempt = claim.data
        offered.append(attempt["example"]["id"])
        submit = client.post(
            reverse("annotation:attempt-submit", kwargs={"attempt_id": attempt["id"]}),
            {"labels": [labels[truth[attempt["example"]["text"]]]], "idempotency_key": f"k-{attempt['id']}"},
            format="json",
        )
        assert submit.status_code == 201, submit.content  # training never gets in the annotator's way
    return offered


# --- over HTTP, in threads (stdlib only) ----------------------------------------------------
# Behaving like the labeling page: claim the next text, answer it, and retry an answer that got
# no answer or a 5xx with the SAME idempotency key until the server acknowledges it
# (frontend/static/frontend/label.js).
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
        self,
        *,
        base_url,
        token,
        slug,
        label_ids,
        stop: threading.Event,
        pause=(0.0, 0.0),
        seed=0,
        heartbeat=False,
        arrive_within=0.0,
    ):
        """`arrive_within`: start after a random delay of up to this many seconds (people do not
        all open the page in the same second)."""
        super().__init__(daemon=True)
        self.heartbeat = heartbeat
        self.arrive_within = arrive_within
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
        if self.arrive_within:
            self.stop_event.wait(self.rng.uniform(0, self.arrive_within))
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
