"""The queue's order before the first model: a diverse sample of the pool, never the file order.

Until a version has scored the pool, an import's file order would be the queue's order, and a
file sorted by class would train the first version on one class. Instead, when examples are
imported (annotation's `examples_imported` hook -> training.services -> the `cold_start` task,
on the default queue) and again when a MiniLM pool finishes embedding, the worker:

1. draws at most COLD_START_CANDIDATES (3,000) claimable examples at random (fast on any pool size);
2. featurizes them: the cached MiniLM embeddings when the project's model uses them and they
   are all there, else the hashed n-grams (idf-weighted, hashed to dense vectors);
3. clusters them (k-means, 3 clusters per label: training.ml.sampling.cluster_count) and orders them "typical and
   diverse" (TypiClust): each cluster's most typical text first, largest clusters first, then
   each cluster's second, and so on (reason `cold_start`);
4. puts the rest of the pool after them in random order (reason `random`);
5. writes Example.priority in (0, 1] with the reason, only while the project has no version
   (training.runs.cold_start_write): any version's positions outrank these.

Called by training.tasks; imports run tasks -> coldstart -> worker_cache -> runs.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from annotation.models import Example, Label, Project

from . import runs
from .ml.classifiers import HashedClassifier, HyperParams
from .ml.encoder import ENCODER_KEY
from .ml.sampling import COLD_START_CANDIDATES, cluster_count, cold_start_order, hashed_vectors, normalize_rows
from .models import ModelKind
from .worker_cache import worker_cache

logger = logging.getLogger(__name__)


def cold_start(*, project_id: int) -> dict | None:
    """Order the project's claimable pool for its cold start. Returns what it did (None when
    the project has a model already, or nothing to order)."""
    started = time.perf_counter()
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    config = runs.config_get(project_id=project_id)
    if config.current_version_id is not None:
        return None
    rows = list(
        Example.objects.filter(project=project, submitted_count__lt=project.annotations_per_example)
        .order_by("id")
        .values_list("id", flat=True)
    )
    ids = np.asarray(rows, dtype=np.int64)
    if not len(ids):
        return None
    rng = np.random.default_rng([config.seed, len(ids)])
    candidates = np.sort(rng.choice(ids, size=min(COLD_START_CANDIDATES, len(ids)), replace=False))
    vectors, source = _vectors(project, config, candidates)
    n_labels = Label.objects.filter(project=project).count()
    k = cluster_count(n_labels, len(candidates))
    order, clusters = cold_start_order(vectors, k, rng)
    rest = rng.permutation(np.setdiff1d(ids, candidates, assume_unique=True))
    sequence = np.concatenate([candidates[order], rest])
    priorities = 1.0 - np.arange(len(sequence)) / len(sequence)
    reasons = np.asarray(["cold_start"] * len(order) + ["random"] * len(rest), dtype=object)
    written = runs.cold_start_write(project_id=project_id, example_ids=sequence, priorities=priorities, reasons=reasons)
    summary = {
        "written": written,
        "pool": len(ids),
        "candidates": len(candidates),
        "clusters": int(len(np.unique(clusters))),
        "features": source,
        "seconds": round(time.perf_counter() - started, 3),
    }
    logger.info("Cold start of project %s: %s", project_id, summary)
    return summary


def _vectors(project: Project, config, candidates: np.ndarray) -> tuple[np.ndarray, str]:
    """(L2-normalised rows, their source): MiniLM embeddings when the project's model uses them
    and every candidate has one, else hashed n-grams (no encoder, nothing to wait for)."""
    if config.model_kind == ModelKind.MINILM:
        key = config.encoder_key or ENCODER_KEY
        index, matrix = worker_cache.embeddings(project.pk, key, ensure=candidates.tolist())
        if all(int(e) in index for e in candidates):
            return normalize_rows(matrix[[index[int(e)] for e in candidates]]), key
    hasher = HashedClassifier(["a", "b"], HyperParams())  # featurize() needs only the buckets
    features = worker_cache.hashed_features(project.pk, hasher, candidates.tolist())
    return hashed_vectors(features.ids, features.offsets), "hashed"
