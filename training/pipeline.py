"""The worker's run steps: what a Celery task (training.tasks) runs. Never imported by the web
process for use (torch comes in through training.ml, inside functions).

One run: claim it (fenced), read the snapshot of accepted labels, featurize (one featurizer
per model kind, training/featurizers.py), fit, evaluate on the held-out split, save weights,
score the pool, register exactly one version, and, if it became current, write the queue
priorities and predictions. The writes are training.runs'; the featurizers' and the loaded
models' memory is training.worker_cache's. This module sends no messages: the tasks ring the
follow-ups (embedding the rest of a pool, a run once the pool is embedded).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from annotation.models import Annotation, Example, Project

from . import runs, selectors
from .featurizers import embed_and_store, featurizer_for
from .ml import store
from .ml.classifiers import HyperParams
from .ml.device import resolve_device
from .ml.metrics import classification_report
from .ml.sampling import DIVERSITY_SHARE, queue_order, uncertainty
from .models import ModelVersion, TrainingRun
from .runs import TrainingRefused
from .worker_cache import worker_cache

logger = logging.getLogger(__name__)

FULL_WRITE_MAX_AGE = 30.0  # seconds


def _params(config) -> HyperParams:
    known = {f.name for f in fields(HyperParams)}
    return HyperParams(**{k: v for k, v in (config.hyperparams or {}).items() if k in known}, seed=config.seed)


# --- one run ----------------------------------------------------------------------------


def execute_run(*, run_id: int, task_id: str = "", worker: str = "", redelivered: bool = False) -> int | None:
    """Claim and execute a run; returns the registered version's id (None if not ours, failed,
    or fenced out). Safe to call any number of times for one run: one version at most."""
    run = runs.run_claim(run_id=run_id, task_id=task_id, worker=worker, redelivered=redelivered)
    if run is None:
        return None
    try:
        return _train(run)
    except TrainingRefused as exc:
        runs.run_fail(run=run, error=str(exc))
    except SoftTimeLimitExceeded:
        runs.run_fail(run=run, error=f"The run took longer than {settings.CELERY_TASK_SOFT_TIME_LIMIT} s.")
    except Exception as exc:
        logger.exception("Training run %s failed", run.pk)
        runs.run_fail(run=run, error=f"{type(exc).__name__}: {exc}")
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


def _snapshot(run: TrainingRun, project: Project, config) -> selectors.Snapshot:
    if project.label_mode != Project.LabelMode.SINGLE:
        raise TrainingRefused("Training supports single-label projects only (this one is multi-label).")
    runs.run_progress(run=run, stage="snapshot")
    snap = selectors.training_snapshot(project=project, config=config)
    if len(snap.train_example_ids) < 2 or snap.n_classes_labeled < 2:
        raise TrainingRefused(
            f"Not enough labels to train yet: {len(snap.train_example_ids)} training examples over "
            f"{snap.n_classes_labeled} label(s); at least two labels must be used "
            f"({len(snap.eval_example_ids)} examples are held out for evaluation)."
        )
    return snap


@dataclass
class Scored:
    """The pool as this run scored it (the examples it could: embedded ones, for MiniLM)."""

    ids: np.ndarray
    probs: np.ndarray
    margins: np.ndarray
    entropies: np.ndarray
    priorities: np.ndarray
    reasons: np.ndarray


def _train(run: TrainingRun) -> int | None:
    """The steps of one claimed run; what differs between model kinds is the featurizer's."""
    project = Project.objects.get(pk=run.project_id)
    config = runs.config_get(project_id=project.pk)
    snap = _snapshot(run, project, config)
    dev = resolve_device(settings.TALLY_TRAINING_DEVICE)
    timings = {"embedding": 0.0, "training": 0.0, "scoring": 0.0}
    pool = _pool(project)
    featurizer = featurizer_for(run=run, project=project, config=config, device=dev.device)
    model = featurizer.model(snap.label_names, _params(config))

    # 1. features
    train, evaluation = featurizer.datasets(model, snap, pool["ids"], timings)

    # 2. fit (with per-epoch held-out accuracy)
    runs.run_progress(run=run, stage="training", n_train=len(snap.train_example_ids), n_eval=len(snap.eval_example_ids))
    fit = model.fit(train, evaluation, device=dev.device)
    timings["training"] = fit.seconds

    # 3. evaluate
    started = time.perf_counter()
    runs.run_progress(run=run, stage="evaluating")
    metrics = _evaluate(model, evaluation, snap)
    timings["scoring"] += time.perf_counter() - started

    # 4. weights, and the encoder key they give the version
    runs.run_progress(run=run, stage="saving")
    relative, sha = _save_weights(run, model, featurizer.kind)
    encoder_key = featurizer.encoder_key(sha)

    # 5. score the pool
    started = time.perf_counter()
    runs.run_progress(run=run, stage="scoring")
    scored_ids, probs = featurizer.score_pool(model, pool["ids"], encoder_key, timings)
    scored = _score(
        run, config, snap, pool, scored_ids, probs, vectors=lambda ids: featurizer.vectors(ids, encoder_key)
    )
    timings["scoring"] += time.perf_counter() - started
    metrics.update(_run_metrics(snap, config, fit.history, scored, pool))

    # 6. register exactly one version; promote if newest
    version, promoted = runs.version_register(
        run=run,
        snapshot=snap,
        kind=featurizer.kind,
        hyperparams=model.params.as_dict(),
        encoder_key=encoder_key,
        device=dev.device,
        device_name=dev.name,
        timings=timings,
        metrics=metrics,
        weights_path=relative,
        weights_sha256=sha,
        loop=featurizer.loop,
    )
    if version is None:
        logger.warning("Run %s was taken over by another worker; its result is discarded.", run.pk)
        return None
    if promoted:
        _write(run, version, scored)
    return version.pk


def _evaluate(model, evaluation, snap: selectors.Snapshot) -> dict:
    """Held-out metrics (empty ones when nothing is held out)."""
    if evaluation is not None:
        features = evaluation.features if evaluation.features is not None else model.featurize(evaluation.texts)
        eval_probs = model.predict_proba(features)
    else:
        eval_probs = np.zeros((0, len(snap.label_ids)), np.float32)
    eval_y = snap.eval_y if snap.eval_example_ids else np.zeros(0, np.int64)
    return classification_report(eval_probs, eval_y, snap.label_names)


def _run_metrics(snap: selectors.Snapshot, config, history: list[dict], scored: Scored, pool: dict) -> dict:
    """What the version records beside the held-out metrics."""
    return {
        "eval_source": snap.eval_source,
        "eval_examples_hash": selectors.manifest_hash([(e, 0, 0) for e in snap.eval_example_ids]),
        "history": history,
        "n_train_examples": len(snap.train_example_ids),
        "train_label_counts": {n: float(c) for n, c in zip(snap.label_names, snap.train_targets.sum(0), strict=True)},
        "n_machine_labels": snap.n_machine_labels,
        "pool_scored": int(len(scored.ids)),
        "pool_size": int(len(pool["ids"])),
        "sampling": config.sampling,
        "aggregation": snap.aggregation,
    }


def _save_weights(run: TrainingRun, model, kind: str) -> tuple[str, str]:
    """(path in the model store, sha256). One file per claim: a worker fenced out of this run
    (another took it over after its lease or the broker's visibility timeout ran out) must
    not overwrite the weights the registered version's sha256 names."""
    tensors, meta = model.state()
    relative = f"project-{run.project_id}/run-{run.pk}-{run.claim_token[:8]}-{kind}.safetensors"
    sha = store.save_weights(store=settings.TALLY_MODEL_STORE, relative=relative, tensors=tensors, metadata=meta)
    return relative, sha


def _score(run, config, snap, pool: dict, scored_ids: np.ndarray, probs: np.ndarray, vectors=None) -> Scored:
    """Uncertainty, queue priorities and reasons of the scored examples; `vectors` (example ids
    -> feature rows) keeps the head of the queue diverse."""
    margins = uncertainty(probs, "margin")
    entropies = uncertainty(probs, "entropy")
    claimable = pool["claimable"][np.isin(pool["ids"], scored_ids)]
    eval_gold = set(snap.eval_example_ids) if snap.eval_source == "gold" else set()
    sub = np.flatnonzero(claimable)
    head_vectors = None
    if vectors is not None and config.sampling != "random":

        def head_vectors(idx):
            return vectors(scored_ids[sub[idx]])

    priorities, reasons = _priorities(
        config, run, probs, scored_ids, claimable, margins, entropies, eval_gold=eval_gold, vectors=head_vectors
    )
    return Scored(
        ids=scored_ids, probs=probs, margins=margins, entropies=entropies, priorities=priorities, reasons=reasons
    )


def _write(run: TrainingRun, version: ModelVersion, scored: Scored) -> None:
    """The head of the queue first (what annotators feel); then the whole pool's positions and
    the predictions admins see, unless a newer run is already waiting to write its own (at most
    FULL_WRITE_MAX_AGE apart). Short transactions, skipped if a newer version is current."""
    write_started = time.perf_counter()
    reordered = runs.priorities_write(
        version=version,
        example_ids=scored.ids,
        priorities=scored.priorities,
        head=runs.QUEUE_HEAD,
        reasons=scored.reasons,
    )
    queue_updated_at = timezone.now()
    progress = {**run.progress, "queue_head_seconds": round(time.perf_counter() - write_started, 4)}
    if reordered:
        progress["queue_updated_at"] = queue_updated_at.isoformat()
        if run.first_event_at:
            progress["freshness_seconds"] = (queue_updated_at - run.first_event_at).total_seconds()
    full = reordered and _full_write_due(version.project_id)
    if full:
        full = runs.priorities_write(
            version=version, example_ids=scored.ids, priorities=scored.priorities, reasons=scored.reasons
        )
        full = full and runs.predictions_write(
            version=version,
            example_ids=scored.ids,
            probs=scored.probs,
            margins=1.0 - scored.margins,
            entropies=scored.entropies,
        )
        if full:
            worker_cache.full_writes[version.project_id] = time.monotonic()
    progress.update(pool_written=bool(full), write_seconds=round(time.perf_counter() - write_started, 4))
    TrainingRun.objects.filter(pk=run.pk).update(progress=progress)


def _full_write_due(project_id: int) -> bool:
    """Write the whole pool now, unless a newer run is queued (it will) and the last full
    write by this worker is recent: under a stream of labels the worker then spends its time
    on fresh queue heads instead of rewriting 100,000 rows after every label."""
    waiting = TrainingRun.objects.filter(project_id=project_id, status=TrainingRun.Status.QUEUED).exists()
    last = worker_cache.full_writes.get(project_id)
    return not waiting or last is None or time.monotonic() - last > FULL_WRITE_MAX_AGE


def _priorities(
    config, run, probs, scored_ids, claimable, margins, entropies, eval_gold: set[int], vectors=None
) -> tuple[np.ndarray, np.ndarray]:
    """Queue priorities and reasons of the scored examples: uncertainty ranking of the claimable
    ones, with a qc_share of positions for random picks and held-out gold items (quality
    control), and with `vectors` (claimable index -> feature rows) a diverse head."""
    rng = np.random.default_rng([config.seed, run.pk])
    scores = {"margin": margins, "entropy": entropies}.get(config.sampling)
    if scores is None:
        scores = uncertainty(probs, "random", rng)
    prio = np.zeros(len(scored_ids), dtype=np.float64)
    reasons = np.full(len(scored_ids), "", dtype=object)
    is_gold = np.isin(scored_ids, np.fromiter(eval_gold, dtype=np.int64, count=len(eval_gold)))
    sub = np.flatnonzero(claimable)
    if not len(sub):
        return prio, reasons
    sub_scores = np.where(is_gold[sub], -np.inf, scores[sub])
    qc = np.flatnonzero(is_gold[sub])
    prio[sub], reasons[sub] = queue_order(
        sub_scores,
        qc_share=config.qc_share,
        rng=rng,
        qc_candidates=qc if len(qc) else None,
        vectors=vectors,
        diversity_share=DIVERSITY_SHARE if vectors is not None else 0.0,
    )
    return prio, reasons


# --- background embedding and explanations ------------------------------------------------


def embed_examples(*, project_id: int, encoder_key: str, example_ids: list[int]) -> int:
    """One chunk task's work: embed what is still missing (texts any project embedded before
    are copied from the shared cache), and record the encoder's seconds for the next version
    (EmbeddingWork). Returns how many examples were filled."""
    dev = resolve_device(settings.TALLY_TRAINING_DEVICE)
    done = embed_and_store(project_id=project_id, encoder_key=encoder_key, example_ids=example_ids, device=dev.device)
    if done.computed:
        runs.embedding_work_record(
            project_id=project_id,
            encoder_key=encoder_key,
            texts=done.computed,
            seconds=done.seconds,
            device=dev.device,
            device_name=dev.name,
        )
    return done.computed + done.reused


def explain_example(*, version_id: int, example_id: int) -> dict:
    version = ModelVersion.objects.get(pk=version_id)
    example = Example.objects.get(pk=example_id, project_id=version.project_id)
    dev = resolve_device(settings.TALLY_TRAINING_DEVICE)
    started = time.perf_counter()
    result = worker_cache.classifier(version, device=dev.device).explain(example.text)
    return {
        **result,
        "label_id": version.classes[result["label_index"]],
        "version": version.sequence,
        "example": example.pk,
        "seconds": round(time.perf_counter() - started, 3),
    }
