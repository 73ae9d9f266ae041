"""Issue 12, items 2, 3 and 7: the pool embeds on its own queue and never delays a run; a run
embeds what it needs itself; embeddings are cached by text across projects; bf16 where the
CPU has it; and the embedding's compute is counted on the versions and their Labor Cards.

Loads the real all-MiniLM-L6-v2 from the installed package (a few seconds on CPU)."""

from pathlib import Path

import numpy as np
import pytest

from tests.factories import add_examples, make_project
from tests.support.annotators import label_next
from training import pipeline, services, tasks
from training.ml.device import cpu_has_native_bf16, use_bf16
from training.ml.encoder import ENCODER_KEY, Encoder, load_encoder
from training.models import EmbeddingCache, EmbeddingWork, ExampleEmbedding, ModelVersion, TrainingRun

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_background(monkeypatch):
    """Nothing runs behind the test's back: runs are executed by the test, chunks are recorded."""
    sent = []
    monkeypatch.setattr(services, "_enqueue", lambda run_id: None)
    monkeypatch.setattr(tasks, "enqueue_run", lambda run_id: None)
    monkeypatch.setattr(tasks.embed_chunk, "delay", lambda *args: sent.append(args))
    from django.core.cache import cache

    cache.clear()
    return sent


@pytest.fixture
def minilm_project(toy_project):
    services.config_update(project=toy_project, model_kind="minilm", hyperparams={"epochs": 60})
    return toy_project


# --- item 2: queues ------------------------------------------------------------------------


def test_the_pool_embeds_on_its_own_queue_and_runs_stay_on_theirs():
    from config.celery_app import app

    route = app.amqp.router.route
    assert route({}, "training.tasks.embed_chunk")["queue"].name == "embedding"
    assert route({}, "training.tasks.run_training")["queue"].name == "training"
    assert route({}, "training.tasks.explain_prediction")["queue"].name == "default"
    assert app.conf.broker_transport_options["queue_order_strategy"] == "priority"
    # the one-worker demo and the test worker list the training queue before the embedding one
    assert "training,default,embedding" in (ROOT / "scripts/demo.sh").read_text()
    from tests.support.worker import QUEUES

    assert QUEUES == ("training", "default", "embedding")
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "-Q training,default -B" in compose and "-Q embedding" in compose


def test_a_run_sent_after_embedding_chunks_is_taken_first(settings):
    """The broker itself: chunks wait on `embedding`, then a run is sent; a worker consuming
    training,default,embedding (in that order, the "priority" strategy) receives the run first."""
    from kombu import Consumer, Queue

    from config.celery_app import app

    names = ("training", "default", "embedding")
    received = []

    def on_message(body, message):
        received.append(message.headers["task"])
        message.ack()

    with app.connection_for_write() as conn:
        queues = [Queue(n, routing_key=n)(conn.default_channel) for n in names]
        for q in queues:
            q.declare()
            q.purge()
        with app.producer_or_acquire() as producer:
            for i in range(3):
                tasks.embed_chunk.apply_async(args=[0, ENCODER_KEY, [i]], producer=producer)
            tasks.run_training.apply_async(args=[0], producer=producer)
        with Consumer(conn, queues, callbacks=[on_message], prefetch_count=1):
            for _ in range(4):
                conn.drain_events(timeout=5)
        for q in queues:
            q.purge()
    assert received[0] == "training.tasks.run_training"
    assert received[1:] == ["training.tasks.embed_chunk"] * 3


# --- item 2: on demand ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_embeds_its_labels_and_the_queue_head_itself_and_leaves_the_rest(
    minilm_project, labeler, toy, no_background, settings, django_capture_on_commit_callbacks
):
    settings.TALLY_EMBED_QUEUE_HEAD = 5
    settings.TALLY_EMBED_CHUNK_SIZE = 8
    with django_capture_on_commit_callbacks(execute=True):
        label_next(minilm_project, labeler, toy, n=12)
    run = TrainingRun.objects.get(project=minilm_project, status="queued")
    assert not ExampleEmbedding.objects.filter(project=minilm_project).exists()  # a cold pool

    version = ModelVersion.objects.get(pk=tasks.run_training(run.pk))
    # the run embedded exactly what it needed: the 12 labeled texts and the next 5 to hand out
    embedded = set(ExampleEmbedding.objects.filter(project=minilm_project).values_list("example_id", flat=True))
    assert len(embedded) == 12 + 5
    assert version.embedding_seconds > 0 and version.metrics["pool_scored"] == 17
    # ... and the examples it scored lead the queue now
    head = list(minilm_project.examples.filter(submitted_count=0).order_by("-priority", "id")[:5])
    assert {e.pk for e in head} <= embedded
    # the other 23 go to the background, on the embedding queue, in chunks of 8
    assert [len(ids) for _, _, ids in no_background] == [8, 8, 7]
    assert not embedded & {e for _, _, ids in no_background for e in ids}


@pytest.mark.slow
def test_the_pool_is_scored_as_far_as_it_is_embedded(
    minilm_project, labeler, toy, no_background, settings, django_capture_on_commit_callbacks
):
    settings.TALLY_EMBED_QUEUE_HEAD = 0
    settings.TALLY_EMBED_CHUNK_SIZE = 4
    with django_capture_on_commit_callbacks(execute=True):
        label_next(minilm_project, labeler, toy, n=12)
    run = TrainingRun.objects.get(project=minilm_project, status="queued")
    version = ModelVersion.objects.get(pk=tasks.run_training(run.pk))
    assert version.metrics["pool_scored"] == 12
    chunks = list(no_background)
    # a chunk that does not double the embedded part queues nothing; the one that does, a run
    tasks.embed_chunk.run(*chunks[0])
    assert not TrainingRun.objects.filter(project=minilm_project, status="queued").exists()
    for chunk in chunks[1:3]:
        tasks.embed_chunk.run(*chunk)
    follow_up = TrainingRun.objects.get(project=minilm_project, status="queued")
    assert follow_up.trigger == "embeddings"
    assert ModelVersion.objects.get(pk=pipeline.execute_run(run_id=follow_up.pk)).metrics["pool_scored"] == 24


# --- item 3: the encoder --------------------------------------------------------------------


@pytest.mark.slow
def test_bucketed_batches_give_the_padded_batch_vectors():
    import torch

    encoder = load_encoder("cpu")
    texts = ["short", "a somewhat longer sentence about a film", "x " * 300, "mid length text here"]
    ids, mask = encoder.tokenize(texts)
    with torch.inference_mode():
        reference = encoder.forward_pooled(ids, mask).numpy()
    np.testing.assert_allclose(encoder.embed(texts, batch_size=2), reference, atol=2e-5)


def test_the_batch_size_follows_the_device(monkeypatch):
    """64 texts a batch on a CPU, 256 on a GPU (encoder.BATCH_SIZE, measured on an H200), looked
    up by device type. Seen through embed's progress, called once per batch."""
    from training.ml import encoder as encoder_module

    encoder = load_encoder("cpu")
    texts = [f"text number {i}" for i in range(300)]

    def steps():
        seen = []
        encoder.embed(texts, progress=lambda done, total: seen.append(done))
        return seen

    assert steps() == [64, 128, 192, 256, 300]
    monkeypatch.setitem(encoder_module.BATCH_SIZE, "cpu", 256)  # no CUDA here: the CPU's entry decides
    assert steps() == [256, 300]
    monkeypatch.undo()
    assert [encoder_module.default_batch_size(d) for d in ("cpu", "cuda", "cuda:1", "mps")] == [64, 256, 256, 64]


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16 (avx512_bf16/amx_bf16)")
def test_bf16_embeddings_stay_within_cosine_0_99_of_fp32():
    from tests.support.annotators import toy_texts

    encoder = load_encoder("cpu")
    texts = list(toy_texts(40)) + [" ".join(toy_texts(60))[:1500]]
    fp32 = encoder.embed(texts)
    bf16 = encoder.embed(texts, bf16=True)
    cosine = (fp32 * bf16).sum(1)  # both unit vectors
    assert cosine.min() >= 0.99, cosine.min()


def test_bf16_is_chosen_per_machine(settings):
    assert use_bf16("cuda") is True
    settings.TALLY_EMBED_BF16 = "off"
    assert use_bf16("cpu") is False
    settings.TALLY_EMBED_BF16 = "on"
    assert use_bf16("cpu") is True
    assert cpu_has_native_bf16("flags\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_has_native_bf16("flags\t: fpu amx_bf16 amx_tile\n")
    assert not cpu_has_native_bf16("flags\t: fpu sse2 avx2 avx512f\n")


@pytest.mark.slow
def test_a_text_in_two_projects_is_embedded_once(admin_user, toy, no_background, monkeypatch):
    first = make_project(admin=admin_user, name="First", labels=("positive", "negative"))
    second = make_project(admin=admin_user, name="Second", labels=("positive", "negative"))
    texts = list(toy)
    add_examples(first, texts[:30])
    add_examples(second, ["  " + t.replace(" ", "  ") for t in texts[10:]])  # same texts, other spacing
    embedded = []
    real_embed = Encoder.embed

    def counting_embed(self, batch, **kwargs):
        embedded.extend(batch)
        return real_embed(self, batch, **kwargs)

    monkeypatch.setattr(Encoder, "embed", counting_embed)
    ids_first = list(first.examples.order_by("id").values_list("id", flat=True))
    ids_second = list(second.examples.order_by("id").values_list("id", flat=True))
    assert pipeline.embed_examples(project_id=first.pk, encoder_key=ENCODER_KEY, example_ids=ids_first) == 30
    assert pipeline.embed_examples(project_id=second.pk, encoder_key=ENCODER_KEY, example_ids=ids_second) == 30
    assert len(embedded) == 30 + 10  # the 20 shared texts ran through the encoder once
    assert EmbeddingCache.objects.filter(encoder_key=ENCODER_KEY).count() == 40
    shared = texts[15]
    a = ExampleEmbedding.objects.get(example__project=first, example__text=shared)
    b = ExampleEmbedding.objects.get(example__project=second, example__text="  " + shared.replace(" ", "  "))
    assert bytes(a.vector) == bytes(b.vector)
    # only the encoder's work is counted as compute: the second project's reuse cost nothing
    assert sum(EmbeddingWork.objects.filter(project=second).values_list("texts", flat=True)) == 10


# --- item 7: compute counted ------------------------------------------------------------------


@pytest.mark.slow
def test_pool_embedding_seconds_reach_the_next_version_and_its_labor_card(
    minilm_project, labeler, toy, admin_user, no_background, settings, django_capture_on_commit_callbacks
):
    from labor_ledger.reports.card import build_card

    settings.TALLY_EMBED_QUEUE_HEAD = 0
    with django_capture_on_commit_callbacks(execute=True):
        label_next(minilm_project, labeler, toy, n=12)
    pool = list(minilm_project.examples.order_by("id").values_list("id", flat=True))
    # the whole pool embedded in the background before the first run (an import, say)
    assert tasks.embed_chunk.run(minilm_project.pk, ENCODER_KEY, pool) == 40
    work = EmbeddingWork.objects.get(project=minilm_project)
    assert work.seconds > 0 and work.version is None
    run = TrainingRun.objects.get(project=minilm_project, status="queued")
    with django_capture_on_commit_callbacks(execute=True):
        version = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=run.pk))
    assert version.embedding_seconds == 0.0  # the run embedded nothing itself
    assert version.pool_embedding_seconds == pytest.approx(work.seconds)
    work.refresh_from_db()
    assert work.version == version
    compute = build_card(project=minilm_project, version=version)["compute"]
    assert compute["embedding_seconds"] > 0 and compute["pool_embedding_seconds"] == round(work.seconds, 3)
    assert compute["pool_embedding"][0]["texts"] == 40
    assert compute["energy_wh"] > 0 and "pool embedding" in compute["method"]
    # counted once: the next version gets none of it
    again = services.training_run_request(project=minilm_project, requested_by=admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        later = ModelVersion.objects.get(pk=pipeline.execute_run(run_id=again.pk))
    assert later.pool_embedding_seconds == 0.0
