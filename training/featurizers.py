"""One featurizer per model kind: what a run's steps do differently for each kind, behind
one interface, so that training.pipeline never branches on the kind.

- HashedFeaturizer ("hashed"): hashed word and bigram ids, read and hashed once per worker.
- EmbeddingFeaturizer ("minilm", the fast loop): cached sentence embeddings under the
  project's encoder (frozen MiniLM, or the last deep version's), the missing ones embedded
  here; a head is trained on them.
- FineTuneFeaturizer ("minilm-ft", the deep loop): raw texts, MiniLM fine-tuned with the
  head; the pool is then embedded with the new encoder, under the weights' hash.

Each one builds the classifier, makes the training and held-out datasets, names the encoder
key of the version, and scores the pool. The worker's side only: torch is imported by the
classifiers, inside their methods.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from annotation.models import Example, Project

from . import runs
from .ml.classifiers import Dataset, HashedClassifier, HeadClassifier, HyperParams, TextClassifier
from .ml.device import use_bf16
from .ml.encoder import ENCODER_KEY
from .ml.finetune import FineTunedClassifier
from .ml.sampling import hashed_vectors, normalize_rows
from .models import Loop, ModelKind, ProjectTrainingConfig, TrainingRun
from .selectors import Snapshot
from .worker_cache import worker_cache


def texts_of(example_ids) -> dict[int, str]:
    return dict(Example.objects.filter(pk__in=example_ids).values_list("id", "text"))


@dataclass(frozen=True)
class Embedded:
    computed: int  # texts run through the encoder
    reused: int  # texts found in the shared cache (embedded before, by any project)
    seconds: float  # encoder time (reading and writing included)


def embed_and_store(
    *, project_id: int, encoder_key: str, example_ids: list[int], device: str, progress=None
) -> Embedded:
    """Embed the given examples not stored yet under `encoder_key`. A text embedded before by
    any project (same text hash, same encoder) is copied from EmbeddingCache; the rest run
    through the encoder in chunks of TALLY_EMBED_CHUNK_SIZE, bf16 where the machine gains by it
    (training.ml.device.use_bf16), and are stored for the project and in the shared cache.
    `progress(done, total)` after each chunk."""
    stored = runs.embeddings_stored(encoder_key=encoder_key, example_ids=example_ids)
    todo = [e for e in example_ids if e not in stored]
    reused = runs.embeddings_reuse(project_id=project_id, encoder_key=encoder_key, example_ids=todo)
    todo = [e for e in todo if e not in reused]
    if not todo:
        return Embedded(computed=0, reused=len(reused), seconds=0.0)
    started = time.perf_counter()
    encoder = worker_cache.encoder(encoder_key, device)
    bf16 = use_bf16(device, probe=encoder.time_precisions)
    size = settings.TALLY_EMBED_CHUNK_SIZE
    computed = 0
    for start in range(0, len(todo), size):
        rows = dict(
            (i, (t, h))
            for i, t, h in Example.objects.filter(pk__in=todo[start : start + size]).values_list(
                "id", "text", "text_hash"
            )
        )
        chunk = [e for e in todo[start : start + size] if e in rows]  # deleted meanwhile
        if chunk:
            vectors = encoder.embed([rows[e][0] for e in chunk], bf16=bf16)
            runs.embeddings_store(
                project_id=project_id,
                encoder_key=encoder_key,
                example_ids=chunk,
                vectors=vectors,
                text_hashes=[rows[e][1] for e in chunk],
            )
            computed += len(chunk)
        if progress is not None:
            progress(start + len(chunk), len(todo))
    return Embedded(computed=computed, reused=len(reused), seconds=time.perf_counter() - started)


class Featurizer:
    kind: str = ""  # the version's ModelKind
    loop: str = Loop.FAST

    def __init__(self, *, run: TrainingRun, project: Project, config: ProjectTrainingConfig, device: str):
        self.run, self.project, self.config, self.device = run, project, config, device

    def model(self, classes: list[str], params: HyperParams) -> TextClassifier:
        raise NotImplementedError

    def datasets(self, model, snap: Snapshot, pool_ids: np.ndarray, timings: dict) -> tuple:
        """(train, held-out or None): the snapshot's examples as the model consumes them."""
        raise NotImplementedError

    def encoder_key(self, weights_sha256: str) -> str:
        """The encoder key the version records ("" when the kind has no encoder)."""
        return ""

    def score_pool(self, model, pool_ids: np.ndarray, encoder_key: str, timings: dict) -> tuple:
        """(scored example ids, probabilities [n, k]): the pool's examples this run can score."""
        raise NotImplementedError

    def vectors(self, example_ids: np.ndarray, encoder_key: str) -> np.ndarray:
        """L2-normalised feature rows of the given (scored) examples, for the queue's diversity:
        their embeddings under `encoder_key` (the hashed kind overrides)."""
        index, matrix = worker_cache.embeddings(self.project.pk, encoder_key)
        return normalize_rows(matrix[[index[int(e)] for e in example_ids]])

    def _datasets(self, snap: Snapshot, make) -> tuple:
        """`make(example_ids)` -> the keyword arguments of a Dataset (features or texts)."""
        train = Dataset(**make(snap.train_example_ids), targets=snap.train_targets)
        if not snap.eval_example_ids:
            return train, None
        targets = np.eye(len(snap.label_ids))[snap.eval_y]
        return train, Dataset(**make(snap.eval_example_ids), targets=targets)

    def _score_embedded(self, model, pool_ids: np.ndarray, encoder_key: str) -> tuple:
        """Score the pool's examples already embedded under `encoder_key` (the rest are
        embedded in the background: training.tasks schedules them after the run)."""
        index, matrix = worker_cache.embeddings(self.project.pk, encoder_key, ensure=pool_ids.tolist())
        have = np.asarray([int(e) in index for e in pool_ids], dtype=bool)
        scored_ids = pool_ids[have]
        if not len(scored_ids):
            return scored_ids, np.zeros((0, len(model.classes)), np.float32)
        return scored_ids, model.predict_proba(matrix[[index[int(e)] for e in scored_ids]])


class HashedFeaturizer(Featurizer):
    kind = ModelKind.HASHED

    def model(self, classes, params):
        return HashedClassifier(classes, params)

    def datasets(self, model, snap, pool_ids, timings):
        runs.run_progress(run=self.run, stage="featurizing")
        self.pool_features = worker_cache.hashed_features(self.project.pk, model, pool_ids.tolist())
        row_of = {int(e): i for i, e in enumerate(pool_ids)}
        return self._datasets(snap, lambda ids: {"features": self.pool_features.take([row_of[e] for e in ids])})

    def score_pool(self, model, pool_ids, encoder_key, timings):
        self.row_of = {int(e): i for i, e in enumerate(pool_ids)}
        return pool_ids, model.predict_proba(self.pool_features)

    def vectors(self, example_ids, encoder_key):
        rows = self.pool_features.take([self.row_of[int(e)] for e in example_ids])
        return hashed_vectors(rows.ids, rows.offsets)


class EmbeddingFeaturizer(Featurizer):
    kind = ModelKind.MINILM

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.key = self.config.encoder_key or ENCODER_KEY

    def model(self, classes, params):
        return HeadClassifier(classes, params, encoder_loader=lambda: worker_cache.encoder(self.key, self.device))

    def datasets(self, model, snap, pool_ids, timings):
        """The labeled texts, and the next texts the queue hands out (so this run scores them),
        embedded here when the background has not reached them: a run never waits for the pool."""
        ids = snap.train_example_ids + snap.eval_example_ids
        head = runs.queue_head_ids(project=self.project, n=settings.TALLY_EMBED_QUEUE_HEAD, exclude=set(ids))
        timings["embedding"] += self._embed_missing(ids + head)
        index, matrix = worker_cache.embeddings(self.project.pk, self.key, ensure=ids)
        return self._datasets(snap, lambda ids: {"features": matrix[[index[e] for e in ids]]})

    def encoder_key(self, weights_sha256):
        return self.key

    def score_pool(self, model, pool_ids, encoder_key, timings):
        return self._score_embedded(model, pool_ids, encoder_key)

    def _embed_missing(self, example_ids: list[int]) -> float:
        """Embed (and cache) the given examples that have no embedding yet. Returns seconds spent."""
        index, _ = worker_cache.embeddings(self.project.pk, self.key, ensure=example_ids)
        missing = [e for e in example_ids if e not in index]
        if not missing:
            return 0.0
        done = embed_and_store(
            project_id=self.project.pk,
            encoder_key=self.key,
            example_ids=missing,
            device=self.device,
            progress=lambda n, total: runs.run_progress(run=self.run, stage="embedding", embedded=n, to_embed=total),
        )
        worker_cache.embeddings(self.project.pk, self.key)
        return done.seconds


class FineTuneFeaturizer(Featurizer):
    kind = ModelKind.MINILM_FT
    loop = Loop.DEEP

    def model(self, classes, params):
        return FineTunedClassifier(classes, params)

    def datasets(self, model, snap, pool_ids, timings):
        texts = texts_of(snap.train_example_ids + snap.eval_example_ids)
        return self._datasets(snap, lambda ids: {"texts": [texts[e] for e in ids]})

    def encoder_key(self, weights_sha256):
        return f"minilm-ft@{weights_sha256[:12]}"  # the fine-tuned weights' content hash

    def score_pool(self, model, pool_ids, encoder_key, timings):
        # the fine-tuned encoder embeds the whole pool once; later fast runs reuse it
        started = time.perf_counter()
        todo = pool_ids.tolist()
        size = settings.TALLY_EMBED_CHUNK_SIZE
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            texts = texts_of(chunk)
            vectors = model.featurize([texts[e] for e in chunk])
            runs.embeddings_store(
                project_id=self.project.pk, encoder_key=encoder_key, example_ids=chunk, vectors=vectors
            )
            runs.run_progress(run=self.run, stage="embedding pool", embedded=start + len(chunk), to_embed=len(todo))
        timings["embedding"] += time.perf_counter() - started
        return self._score_embedded(model, pool_ids, encoder_key)


def featurizer_for(*, run: TrainingRun, project: Project, config: ProjectTrainingConfig, device: str) -> Featurizer:
    """The project's model kind; the deep loop fine-tunes only where the kind is MiniLM."""
    if config.model_kind == ModelKind.HASHED:
        cls = HashedFeaturizer
    elif run.loop == Loop.DEEP and config.model_kind == ModelKind.MINILM:
        cls = FineTuneFeaturizer
    else:
        cls = EmbeddingFeaturizer
    return cls(run=run, project=project, config=config, device=device)
