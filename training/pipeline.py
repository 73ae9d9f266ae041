"""The worker's side of training: what a Celery task runs. Never imported by the web process
(torch comes in through training.ml, inside functions).

One run: claim it (fenced), read the snapshot of accepted labels, featurize (cached
embeddings, the missing ones computed here), fit, evaluate on the held-out split, score the
pool, save weights, register exactly one version, and, if it became current, write the
predictions and queue priorities.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import fields

import numpy as np
from django.conf import settings
from django.utils import timezone

from annotation.models import Annotation, Example, Project

from . import selectors, services
from .ml import store
from .ml.classifiers import Dataset, HashedClassifier, HashedFeatures, HeadClassifier, HyperParams
from .ml.encoder import ENCODER_KEY
from .ml.metrics import classification_report
from .ml.sampling import queue_priorities, uncertainty
from .models import ExampleEmbedding, Loop, ModelKind, ModelVersion, TrainingRun

logger = logging.getLogger(__name__)


class TrainingRefused(Exception):
    """The run cannot train (not enough labels, unsupported project): fail it with this message."""


# --- worker-process caches (immutable data only: embeddings and texts never change) -------

_embeddings: dict[tuple[int, str], dict] = {}
_hashed: dict[tuple[int, int], dict] = {}
_classifiers: OrderedDict[int, object] = OrderedDict()
_encoders: dict[tuple[str, str], object] = {}


def cached_embeddings(
    project_id: int, encoder_key: str, ensure: list[int] | None = None
) -> tuple[dict[int, int], np.ndarray]:
    """{example id: row} and the float32 matrix of the project's cached embeddings, read
    incrementally (rows newer than the last read). Rows committed out of id order by parallel
    chunk tasks are caught by `ensure`: any of those example ids still missing is looked up."""
    entry = _embeddings.setdefault((project_id, encoder_key), {"last": 0, "index": {}, "matrix": None})
    base = ExampleEmbedding.objects.filter(project_id=project_id, encoder_key=encoder_key)
    new = list(base.filter(id__gt=entry["last"]).order_by("id").values_list("id", "example_id", "vector"))
    if new:
        entry["last"] = new[-1][0]
    if ensure is not None:
        missing = [e for e in ensure if e not in entry["index"]]
        seen = {ex for _, ex, _ in new}
        for start in range(0, len(missing), 10_000):
            chunk = [e for e in missing[start : start + 10_000] if e not in seen]
            if chunk:
                new += list(base.filter(example_id__in=chunk).values_list("id", "example_id", "vector"))
    new = [row for row in new if row[1] not in entry["index"]]
    if new:
        block = np.frombuffer(b"".join(bytes(v) for _, _, v in new), dtype=np.float32).reshape(len(new), -1)
        offset = 0 if entry["matrix"] is None else len(entry["matrix"])
        for i, (_, ex, _) in enumerate(new):
            entry["index"][ex] = offset + i
        entry["matrix"] = block.copy() if entry["matrix"] is None else np.vstack([entry["matrix"], block])
    return entry["index"], entry["matrix"] if entry["matrix"] is not None else np.zeros((0, 384), np.float32)


def cached_hashed_features(project_id: int, model: HashedClassifier, example_ids: list[int]) -> HashedFeatures:
    """Hashed n-gram ids of the given examples (texts are read and hashed once per worker)."""
    entry = _hashed.setdefault((project_id, model.params.buckets), {"rows": {}})
    missing = [e for e in example_ids if e not in entry["rows"]]
    for start in range(0, len(missing), 5000):
        chunk = missing[start : start + 5000]
        texts = dict(Example.objects.filter(pk__in=chunk).values_list("id", "text"))
        feats = model.featurize([texts[e] for e in chunk])
        for i, e in enumerate(chunk):
            entry["rows"][e] = feats.ids[feats.offsets[i] : feats.offsets[i + 1]]
    parts = [entry["rows"][e] for e in example_ids]
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    return HashedFeatures(
        ids=np.concatenate(parts) if parts else np.zeros(0, np.int64),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
    )


def encoder_for_key(encoder_key: str, device: str):
    """The frozen MiniLM, or the fine-tuned encoder of the deep version that owns the key."""
    from .ml.encoder import cached_encoder

    if encoder_key == ENCODER_KEY:
        return cached_encoder(device)
    if (encoder_key, device) not in _encoders:
        owner = ModelVersion.objects.filter(loop=Loop.DEEP, encoder_key=encoder_key).order_by("id").first()
        if owner is None:
            raise TrainingRefused(f"No deep model version owns the encoder {encoder_key!r}.")
        _encoders[(encoder_key, device)] = load_classifier(owner, device=device).encoder
    return _encoders[(encoder_key, device)]


def load_classifier(version: ModelVersion, *, device: str = "cpu"):
    """A registered version's classifier, from the model store only (sha256 checked)."""
    from .ml.finetune import FineTunedClassifier

    if version.pk in _classifiers:
        _classifiers.move_to_end(version.pk)
        return _classifiers[version.pk]
    tensors, meta = store.load_weights(
        store=settings.TALLY_MODEL_STORE, relative=version.weights_path, expected_sha256=version.weights_sha256
    )
    if version.kind == ModelKind.HASHED:
        clf = HashedClassifier.from_state(tensors, meta)
    elif version.kind == ModelKind.MINILM:
        key = version.encoder_key
        clf = HeadClassifier.from_state(tensors, meta, encoder_loader=lambda: encoder_for_key(key, device))
    else:
        clf = FineTunedClassifier.from_state(tensors, meta, device=device)
    _classifiers[version.pk] = clf
    while len(_classifiers) > 3:
        _classifiers.popitem(last=False)
    return clf


def _params(config) -> HyperParams:
    known = {f.name for f in fields(HyperParams)}
    return HyperParams(**{k: v for k, v in (config.hyperparams or {}).items() if k in known}, seed=config.seed)


def _embed_missing(
    project_id: int, encoder_key: str, example_ids: list[int], device: str, run: TrainingRun | None = None
) -> float:
    """Embed (and cache) the given examples that have no embedding yet. Returns seconds spent."""
    index, _ = cached_embeddings(project_id, encoder_key, ensure=example_ids)
    missing = [e for e in example_ids if e not in index]
    if not missing:
        return 0.0
    started = time.perf_counter()
    encoder = encoder_for_key(encoder_key, device)
    size = settings.TALLY_EMBED_CHUNK_SIZE
    for start in range(0, len(missing), size):
        chunk = missing[start : start + size]
        texts = dict(Example.objects.filter(pk__in=chunk).values_list("id", "text"))
        vectors = encoder.embed([texts[e] for e in chunk], bf16=device == "cuda")
        services.embeddings_store(project_id=project_id, encoder_key=encoder_key, example_ids=chunk, vectors=vectors)
        if run is not None:
            services.run_progress(run=run, stage="embedding", embedded=start + len(chunk), to_embed=len(missing))
    cached_embeddings(project_id, encoder_key)
    return time.perf_counter() - started


# --- one run ----------------------------------------------------------------------------


def execute_run(*, run_id: int, task_id: str = "", worker: str = "", redelivered: bool = False) -> int | None:
    """Claim and execute a run; returns the registered version's id (None if not ours, failed,
    or fenced out). Safe to call any number of times for one run: one version at most."""
    from celery.exceptions import SoftTimeLimitExceeded

    run = services.run_claim(run_id=run_id, task_id=task_id, worker=worker, redelivered=redelivered)
    if run is None:
        return None
    try:
        return _train(run)
    except TrainingRefused as exc:
        services.run_fail(run=run, error=str(exc))
    except SoftTimeLimitExceeded:
        services.run_fail(run=run, error=f"The run took longer than {settings.CELERY_TASK_SOFT_TIME_LIMIT} s.")
    except Exception as exc:
        logger.exception("Training run %s failed", run.pk)
        services.run_fail(run=run, error=f"{type(exc).__name__}: {exc}")
    return None


def _pool(project: Project) -> dict:
    rows = list(Example.objects.filter(project=project).order_by("id").values_list("id", "submitted_count"))
    machine = set(
        Annotation.objects.filter(
            project=project, source=Annotation.Source.MACHINE, status=Annotation.Status.ACCEPTED
        ).values_list("example_id", flat=True)
    )
    ids = np.asarray([r[0] for r in rows], dtype=np.int64)
    claimable = np.asarray([r[1] < project.annotations_per_example and r[0] not in machine for r in rows], dtype=bool)
    return {"ids": ids, "claimable": claimable}


def _train(run: TrainingRun) -> int | None:
    from .ml.device import resolve_device
    from .ml.finetune import FineTunedClassifier

    project = Project.objects.get(pk=run.project_id)
    config = services.config_get(project_id=project.pk)
    if project.label_mode != Project.LabelMode.SINGLE:
        raise TrainingRefused("Training supports single-label projects only (this one is multi-label).")
    services.run_progress(run=run, stage="snapshot")
    snap = selectors.training_snapshot(project=project, config=config)
    if len(snap.train_example_ids) < 2 or snap.n_classes_labeled < 2:
        raise TrainingRefused(
            f"Not enough labels to train yet: {len(snap.train_example_ids)} training examples over "
            f"{snap.n_classes_labeled} label(s); at least two labels must be used "
            f"({len(snap.eval_example_ids)} examples are held out for evaluation)."
        )
    dev = resolve_device(settings.TALLY_TRAINING_DEVICE)
    params = _params(config)
    timings = {"embedding": 0.0, "training": 0.0, "scoring": 0.0}
    pool = _pool(project)
    train_ids, eval_ids = snap.train_example_ids, snap.eval_example_ids
    deep = run.loop == Loop.DEEP and config.model_kind == ModelKind.MINILM
    encoder_key = ""

    # 1. features
    if config.model_kind == ModelKind.HASHED:
        kind = ModelKind.HASHED
        model = HashedClassifier(snap.label_names, params)
        services.run_progress(run=run, stage="featurizing")
        pool_features = cached_hashed_features(project.pk, model, pool["ids"].tolist())
        row_of = {int(e): i for i, e in enumerate(pool["ids"])}
        train = Dataset(features=pool_features.take([row_of[e] for e in train_ids]), targets=snap.train_targets)
        evaluation = (
            Dataset(
                features=pool_features.take([row_of[e] for e in eval_ids]),
                targets=np.eye(len(snap.label_ids))[snap.eval_y],
            )
            if eval_ids
            else None
        )
    elif deep:
        kind = ModelKind.MINILM_FT
        model = FineTunedClassifier(snap.label_names, params)
        texts = dict(Example.objects.filter(pk__in=train_ids + eval_ids).values_list("id", "text"))
        train = Dataset(texts=[texts[e] for e in train_ids], targets=snap.train_targets)
        evaluation = (
            Dataset(texts=[texts[e] for e in eval_ids], targets=np.eye(len(snap.label_ids))[snap.eval_y])
            if eval_ids
            else None
        )
    else:
        kind = ModelKind.MINILM
        encoder_key = config.encoder_key or ENCODER_KEY
        model = HeadClassifier(
            snap.label_names, params, encoder_loader=lambda: encoder_for_key(encoder_key, dev.device)
        )
        timings["embedding"] += _embed_missing(project.pk, encoder_key, train_ids + eval_ids, dev.device, run)
        index, matrix = cached_embeddings(project.pk, encoder_key, ensure=train_ids + eval_ids)
        train = Dataset(features=matrix[[index[e] for e in train_ids]], targets=snap.train_targets)
        evaluation = (
            Dataset(features=matrix[[index[e] for e in eval_ids]], targets=np.eye(len(snap.label_ids))[snap.eval_y])
            if eval_ids
            else None
        )

    # 2. fit (with per-epoch held-out accuracy)
    services.run_progress(run=run, stage="training", n_train=len(train_ids), n_eval=len(eval_ids))
    fit = model.fit(train, evaluation, device=dev.device)
    timings["training"] = fit.seconds

    # 3. evaluate
    started = time.perf_counter()
    services.run_progress(run=run, stage="evaluating")
    if evaluation is not None:
        eval_probs = model.predict_proba(
            evaluation.features if evaluation.features is not None else model.featurize(evaluation.texts)
        )
    else:
        eval_probs = np.zeros((0, len(snap.label_ids)), np.float32)
    metrics = classification_report(eval_probs, snap.eval_y if eval_ids else np.zeros(0, np.int64), snap.label_names)
    timings["scoring"] += time.perf_counter() - started

    # 4. weights (the deep loop's encoder key is its weights' content hash)
    services.run_progress(run=run, stage="saving")
    tensors, meta = model.state()
    relative = f"project-{project.pk}/run-{run.pk}-{kind}.safetensors"
    sha = store.save_weights(store=settings.TALLY_MODEL_STORE, relative=relative, tensors=tensors, metadata=meta)
    if deep:
        encoder_key = f"minilm-ft@{sha[:12]}"

    # 5. score the pool
    started = time.perf_counter()
    services.run_progress(run=run, stage="scoring")
    if kind == ModelKind.HASHED:
        scored_ids, probs = pool["ids"], model.predict_proba(pool_features)
    else:
        if deep:
            # the fine-tuned encoder embeds the whole pool once; later fast runs reuse it
            t0 = time.perf_counter()
            missing = pool["ids"].tolist()
            size = settings.TALLY_EMBED_CHUNK_SIZE
            for start in range(0, len(missing), size):
                chunk = missing[start : start + size]
                txt = dict(Example.objects.filter(pk__in=chunk).values_list("id", "text"))
                services.embeddings_store(
                    project_id=project.pk,
                    encoder_key=encoder_key,
                    example_ids=chunk,
                    vectors=model.featurize([txt[e] for e in chunk]),
                )
                services.run_progress(
                    run=run, stage="embedding pool", embedded=start + len(chunk), to_embed=len(missing)
                )
            timings["embedding"] += time.perf_counter() - t0
        index, matrix = cached_embeddings(project.pk, encoder_key, ensure=pool["ids"].tolist())
        have = np.asarray([int(e) in index for e in pool["ids"]], dtype=bool)
        scored_ids = pool["ids"][have]
        probs = (
            model.predict_proba(matrix[[index[int(e)] for e in scored_ids]])
            if len(scored_ids)
            else np.zeros((0, len(snap.label_ids)), np.float32)
        )
        if not have.all():
            services.embeddings_schedule(project=project, encoder_key=encoder_key)
    margins = uncertainty(probs, "margin")
    entropies = uncertainty(probs, "entropy")
    claimable = pool["claimable"][np.isin(pool["ids"], scored_ids)]
    priorities = _priorities(
        config,
        run,
        probs,
        scored_ids,
        claimable,
        margins,
        entropies,
        eval_gold=set(eval_ids) if snap.eval_source == "gold" else set(),
    )
    timings["scoring"] += time.perf_counter() - started

    metrics.update(
        eval_source=snap.eval_source,
        eval_examples_hash=selectors.manifest_hash([(e, 0, 0) for e in eval_ids]),
        history=fit.history,
        n_train_examples=len(train_ids),
        train_label_counts={n: float(c) for n, c in zip(snap.label_names, snap.train_targets.sum(0), strict=True)},
        n_machine_labels=snap.n_machine_labels,
        pool_scored=int(len(scored_ids)),
        pool_size=int(len(pool["ids"])),
        sampling=config.sampling,
    )

    # 6. register exactly one version; promote if newest
    version, promoted = services.version_register(
        run=run,
        snapshot=snap,
        kind=kind,
        hyperparams=model.params.as_dict(),
        encoder_key=encoder_key,
        device=dev.device,
        device_name=dev.name,
        timings=timings,
        metrics=metrics,
        weights_path=relative,
        weights_sha256=sha,
    )
    if version is None:
        logger.warning("Run %s was taken over by another worker; its result is discarded.", run.pk)
        return None

    # 7. the head of the queue first (what annotators feel); then the whole pool's positions and
    #    the predictions admins see, unless a newer run is already waiting to write its own (at
    #    most FULL_WRITE_MAX_AGE apart). Short transactions, skipped if a newer version is current.
    if promoted:
        write_started = time.perf_counter()
        reordered = services.priorities_write(
            version=version, example_ids=scored_ids, priorities=priorities, head=services.QUEUE_HEAD
        )
        queue_updated_at = timezone.now()
        progress = {**run.progress, "queue_head_seconds": round(time.perf_counter() - write_started, 4)}
        if reordered:
            progress["queue_updated_at"] = queue_updated_at.isoformat()
            if run.first_event_at:
                progress["freshness_seconds"] = (queue_updated_at - run.first_event_at).total_seconds()
        full = reordered and _full_write_due(project.pk)
        if full:
            full = services.priorities_write(version=version, example_ids=scored_ids, priorities=priorities)
            full = full and services.predictions_write(
                version=version, example_ids=scored_ids, probs=probs, margins=1.0 - margins, entropies=entropies
            )
            if full:
                _full_writes[project.pk] = time.monotonic()
        progress.update(pool_written=bool(full), write_seconds=round(time.perf_counter() - write_started, 4))
        TrainingRun.objects.filter(pk=run.pk).update(progress=progress)
    return version.pk


FULL_WRITE_MAX_AGE = 30.0  # seconds
_full_writes: dict[int, float] = {}


def _full_write_due(project_id: int) -> bool:
    """Write the whole pool now, unless a newer run is queued (it will) and the last full
    write by this worker is recent: under a stream of labels the worker then spends its time
    on fresh queue heads instead of rewriting 100,000 rows after every label."""
    waiting = TrainingRun.objects.filter(project_id=project_id, status=TrainingRun.Status.QUEUED).exists()
    last = _full_writes.get(project_id)
    return not waiting or last is None or time.monotonic() - last > FULL_WRITE_MAX_AGE


def _priorities(config, run, probs, scored_ids, claimable, margins, entropies, eval_gold: set[int]) -> np.ndarray:
    """Queue priorities of the scored examples: uncertainty ranking of the claimable ones, with
    a qc_share of positions for random picks and held-out gold items (quality control)."""
    rng = np.random.default_rng([config.seed, run.pk])
    scores = {"margin": margins, "entropy": entropies}.get(config.sampling)
    if scores is None:
        scores = uncertainty(probs, "random", rng)
    prio = np.zeros(len(scored_ids), dtype=np.float64)
    is_gold = np.isin(scored_ids, np.fromiter(eval_gold, dtype=np.int64, count=len(eval_gold)))
    sub = np.flatnonzero(claimable)
    if not len(sub):
        return prio
    sub_scores = np.where(is_gold[sub], -np.inf, scores[sub])
    qc = np.flatnonzero(is_gold[sub])
    prio[sub] = queue_priorities(sub_scores, qc_share=config.qc_share, rng=rng, qc_candidates=qc if len(qc) else None)
    return prio


# --- background embedding and explanations ------------------------------------------------


def embed_examples(*, project_id: int, encoder_key: str, example_ids: list[int]) -> int:
    """One chunk task: embed what is still missing; when the project's pool is complete, queue
    a run so that the new examples get predictions and queue positions."""
    from .ml.device import resolve_device

    config = services.config_get(project_id=project_id)
    dev = resolve_device(settings.TALLY_TRAINING_DEVICE)
    existing = set(
        ExampleEmbedding.objects.filter(encoder_key=encoder_key, example_id__in=example_ids).values_list(
            "example_id", flat=True
        )
    )
    todo = [e for e in example_ids if e not in existing]
    if todo:
        texts = dict(Example.objects.filter(pk__in=todo).values_list("id", "text"))
        todo = [e for e in todo if e in texts]  # deleted meanwhile
        vectors = encoder_for_key(encoder_key, dev.device).embed([texts[e] for e in todo], bf16=dev.device == "cuda")
        services.embeddings_store(project_id=project_id, encoder_key=encoder_key, example_ids=todo, vectors=vectors)
    progress = selectors.embedding_progress(project=Project(pk=project_id), encoder_key=encoder_key)
    if progress["done"] and todo and config.enabled:
        services.embeddings_done(project_id=project_id)
    return len(todo)


def explain_example(*, version_id: int, example_id: int) -> dict:
    from .ml.device import resolve_device

    version = ModelVersion.objects.get(pk=version_id)
    example = Example.objects.get(pk=example_id, project_id=version.project_id)
    dev = resolve_device(settings.TALLY_TRAINING_DEVICE)
    started = time.perf_counter()
    result = load_classifier(version, device=dev.device).explain(example.text)
    return {
        **result,
        "label_id": version.classes[result["label_index"]],
        "version": version.sequence,
        "example": example.pk,
        "seconds": round(time.perf_counter() - started, 3),
    }
