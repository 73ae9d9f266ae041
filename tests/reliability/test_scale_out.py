"""Scaling out on the engines Tally already uses (issue 18, item 8): two gunicorn servers behind
the annotators (as behind a load balancer), one Celery worker for runs and the default queue
and another for the pool's embedding, all on one PostgreSQL and one Redis. Annotators label
while the pool embeds and the model retrains. Afterwards nothing happened twice: each
submission stored and paid once, each run executed once with at most one version, each text
embedded once, and the ledger verifies. docs/deployment.md shows the same layout over several
machines."""

import json
import threading
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Count, Sum
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotation.models import Annotation, Example, ImportBatch, Label, Membership
from labor_ledger import selectors as ledger_selectors
from labor_ledger import services as ledger_services
from labor_ledger.models import LedgerEntry
from tests.factories import UserFactory, add_member, make_project
from tests.support.annotators import Annotator, run_annotators
from training import services as training_services
from training.ml.data import datasets_dir, read_sst2
from training.ml.encoder import ENCODER_KEY
from training.models import EmbeddingCache, EmbeddingWork, ExampleEmbedding, ModelVersion, TrainingRun

from .harness import Gunicorn, Worker, env_for, wait_for, wait_for_other_sessions_to_end

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

POOL, ANNOTATORS, SECONDS = 240, 6, 20.0


@pytest.fixture
def procs():
    started = []
    yield started
    for proc in reversed(started):
        proc.stop()
    wait_for_other_sessions_to_end()


def upload_csv(base_url: str, token: str, slug: str, body: str) -> tuple[int, dict]:
    """POST a CSV to the import API (multipart, stdlib only)."""
    boundary = uuid.uuid4().hex
    payload = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="pool.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\n{body}\r\n--{boundary}--\r\n"
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/api/projects/{slug}/imports/",
        data=payload,
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {"error": error.read().decode()[:500]}


def test_two_web_servers_and_a_worker_per_queue_do_nothing_twice(admin_user, tmp_path, procs):
    path = datasets_dir() / "sst2_train.tsv"
    if not path.exists():
        pytest.skip(f"SST-2 not found at {path}; set TALLY_DATASETS_DIR")
    project = make_project(admin=admin_user, name="Scale out", labels=("positive", "negative"))
    texts = list(dict.fromkeys(t for _, t in read_sst2(path, limit=POOL)))
    start = timezone.now() - timedelta(hours=1)
    ledger_services.pay_policy_create(
        project=project, created_by=admin_user, piece_rate=Decimal("0.05"), effective_from=start, now=start
    )
    training_services.config_update(
        project=project, model_kind="minilm", retrain_every_n_labels=5, min_labels=6, holdout_share=0.2
    )
    label_ids = list(Label.objects.filter(project=project).values_list("id", flat=True))
    tokens = [
        Token.objects.create(user=add_member(project, Membership.Role.ANNOTATOR, UserFactory())).key
        for _ in range(ANNOTATORS)
    ]

    env = env_for(
        CACHE_KEY_PREFIX=f"scale-out-{uuid.uuid4().hex[:8]}",  # no lock left by an earlier session
        TALLY_MODEL_STORE=tmp_path / "models",
        TALLY_TRAINING_DEVICE="cpu",
        TALLY_TRAINING_THREADS=1,
        TALLY_EMBED_CHUNK_SIZE=32,
    )
    procs.append(Worker("runs", tmp_path, env, queues="training,default"))
    procs.append(Worker("embedder", tmp_path, env, queues="embedding"))
    servers = [Gunicorn(tmp_path, env, workers=1, threads=4) for _ in range(2)]
    procs.extend(servers)

    # the pool arrives as users send it: an import through one web server; the runs worker
    # imports it, and the import's hook sends the pool's embedding chunks to the embedder
    admin_token = Token.objects.create(user=admin_user).key
    body = "text\n" + "".join(f'"{t.replace(chr(34), chr(34) * 2)}"\n' for t in texts)
    status, batch = upload_csv(servers[1].url, admin_token, project.slug, body)
    assert status == 202, (status, batch)
    wait_for(
        lambda: ImportBatch.objects.get(pk=batch["id"]).status == ImportBatch.Status.SUCCEEDED,
        120,
        what="the import to finish on the runs worker",
    )
    pool = Example.objects.filter(project=project).count()
    assert pool == len(texts)

    stop = threading.Event()
    crowd = [
        Annotator(
            base_url=servers[i % 2].url,
            token=token,
            slug=project.slug,
            label_ids=label_ids,
            stop=stop,
            pause=(0.2, 0.6),
            seed=i,
            heartbeat=True,
        )
        for i, token in enumerate(tokens)
    ]
    run_annotators(crowd, SECONDS)
    wait_for(
        lambda: ExampleEmbedding.objects.filter(example__project=project, encoder_key=ENCODER_KEY).count() == pool,
        300,
        what="the embedding worker to embed the whole pool",
    )
    wait_for(
        lambda: not TrainingRun.objects.filter(project=project, status__in=["queued", "running"]).exists(),
        300,
        what="the training queue to drain",
    )

    # web: no server error; every acknowledged submission stored once and paid once
    statuses, acknowledged = {}, {}
    for a in crowd:
        for code, n in a.tally.statuses.items():
            statuses[code] = statuses.get(code, 0) + n
        acknowledged.update(a.tally.accepted)
    assert not [code for code in statuses if code >= 500 or code == 0], statuses
    stored = dict(Annotation.objects.filter(project=project).values_list("idempotency_key", "id"))
    assert stored == acknowledged and len(stored) >= 10
    pay = dict(
        LedgerEntry.objects.filter(project=project, kind=LedgerEntry.Kind.PIECE_PAY)
        .values_list("annotation_id")
        .annotate(n=Count("id"))
    )
    assert pay == {annotation_id: 1 for annotation_id in stored.values()}
    verified = ledger_selectors.ledger_verify(project=project)
    assert verified.ok, verified.problems

    # runs: each executed once, at most one version each, the versions numbered without gaps
    runs = list(TrainingRun.objects.filter(project=project))
    assert runs and all(r.status == "succeeded" and r.attempts == 1 for r in runs), [
        (r.pk, r.status, r.attempts, r.error) for r in runs
    ]
    per_run = dict(ModelVersion.objects.filter(project=project).values_list("run_id").annotate(n=Count("id")))
    assert set(per_run.values()) == {1} and len(per_run) == len(runs)
    sequences = sorted(ModelVersion.objects.filter(project=project).values_list("sequence", flat=True))
    assert sequences == list(range(1, len(runs) + 1))

    # embeddings: every text once; the embedding worker computed no text twice
    assert ExampleEmbedding.objects.filter(example__project=project).count() == pool
    cached = EmbeddingCache.objects.filter(encoder_key=ENCODER_KEY).count()
    computed_by_chunks = EmbeddingWork.objects.filter(project=project).aggregate(n=Sum("texts"))["n"] or 0
    assert 0 < computed_by_chunks <= cached <= pool
    # the runs did not wait for the pool: chunks went to the embedder only (a task's log line
    # reads "Task training.tasks.embed_chunk[<id>] received")
    runs_worker, embedder = procs[0], procs[1]
    assert "training.tasks.embed_chunk[" in embedder.output()
    assert "training.tasks.embed_chunk[" not in runs_worker.output()
