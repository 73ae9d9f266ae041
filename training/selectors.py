"""Reads for the training domain, each scoped by the project the caller already resolved
through annotation.permissions.project_for. Imported by the web process: no torch here."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.utils import timezone

from annotation import agreement
from annotation.models import Annotation, Example, Label, Project
from core import aggregation as label_aggregation

from .ml.evaluation import evaluation_summary, wilson_interval
from .models import (
    AcceptBatch,
    Aggregation,
    ExampleEmbedding,
    ManifestEntry,
    ModelVersion,
    Prediction,
    ProjectTrainingConfig,
    TrainingRun,
)


def training_config(*, project: Project) -> ProjectTrainingConfig:
    """The saved config, or the defaults (unsaved) when the project has none yet."""
    return ProjectTrainingConfig.objects.filter(project=project).first() or ProjectTrainingConfig(project=project)


def runs_for(*, project: Project) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(project=project).select_related("model_version").order_by("-id")


def versions_for(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).select_related("parent", "run").order_by("-sequence")


def current_version(*, project: Project) -> ModelVersion | None:
    config = ProjectTrainingConfig.objects.filter(project=project).select_related("current_version").first()
    return config.current_version if config else None


def manifest_for(*, version: ModelVersion) -> QuerySet[ManifestEntry]:
    return ManifestEntry.objects.filter(version=version).order_by("annotation_id", "label_id")


def version_agreement(*, version: ModelVersion, n_boot: int = 300, seed: int = 0) -> dict:
    """The agreement figures over the human labels of the version's manifest, as it recorded
    them (an annotation retracted since still counts: the version trained on it), with the
    aggregation that made its targets. Admins and auditors only (it names annotators). A
    version's manifest never changes, so its figures are cached (a day)."""
    key = f"version-agreement:{version.pk}:{n_boot}:{seed}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    entries = ManifestEntry.objects.filter(version=version)
    label_of: dict[int, set[int]] = {}
    for annotation_id, label_id in entries.values_list("annotation_id", "label_id"):
        label_of.setdefault(annotation_id, set()).add(label_id)
    annotations = Annotation.objects.filter(pk__in=entries.values("annotation_id"))
    ratings = agreement.ratings_for(project=version.project, annotations=annotations, label_of=label_of)
    out = agreement.figures(ratings, n_boot=n_boot, seed=seed)
    out["version"] = version.sequence
    out["aggregation"] = version.aggregation
    cache.set(key, out, 24 * 3600)
    return out


def version_evaluation(*, version: ModelVersion) -> dict:
    """The honest reading of the version's held-out figures (training/ml/evaluation.py), with
    the texts per label it was trained on, counted from its manifest."""
    per_label = dict(
        ManifestEntry.objects.filter(version=version)
        .order_by()
        .values("label_id")
        .annotate(n=Count("example_id", distinct=True))
        .values_list("label_id", "n")
    )
    names = (version.metrics.get("confusion_matrix") or {}).get("labels") or []
    train_counts = {name: per_label.get(label_id, 0) for label_id, name in zip(version.classes, names, strict=False)}
    return evaluation_summary(version.metrics, train_counts)


def manifest_hash(entries, aggregation: str = Aggregation.MAJORITY) -> str:
    """sha256 over sorted "annotation:example:label" lines: equal sets give equal hashes. An
    aggregation other than the majority vote (the only one before it was a choice, so older
    hashes stay valid) adds a line: the same labels aggregated otherwise hash differently."""
    digest = hashlib.sha256()
    if aggregation != Aggregation.MAJORITY:
        digest.update(f"aggregation:{aggregation}\n".encode())
    for annotation_id, example_id, label_id in sorted(entries):
        digest.update(f"{annotation_id}:{example_id}:{label_id}\n".encode())
    return digest.hexdigest()


def predictions_for(
    *,
    project: Project,
    label_id: int | None = None,
    min_confidence: float | None = None,
    max_confidence: float | None = None,
    labeled: bool | None = None,
    ordering: str = "-confidence",
) -> QuerySet[Prediction]:
    qs = Prediction.objects.filter(project=project).select_related("example", "label", "version")
    if label_id is not None:
        qs = qs.filter(label_id=label_id)
    if min_confidence is not None:
        qs = qs.filter(confidence__gte=min_confidence)
    if max_confidence is not None:
        qs = qs.filter(confidence__lte=max_confidence)
    if labeled is not None:
        has_label = Exists(Annotation.objects.filter(example=OuterRef("example_id"), status=Annotation.Status.ACCEPTED))
        qs = qs.filter(has_label) if labeled else qs.exclude(has_label)
    order = {
        "confidence": ("confidence", "example_id"),
        "-confidence": ("-confidence", "example_id"),
        "margin": ("margin", "example_id"),
        "-margin": ("-margin", "example_id"),
        "entropy": ("entropy", "example_id"),
        "-entropy": ("-entropy", "example_id"),
        "priority": ("example__priority", "example_id"),
        "-priority": ("-example__priority", "example_id"),
        "example": ("example_id",),
    }[ordering]
    return qs.order_by(*order)


PREDICTION_ORDERINGS = (
    "confidence",
    "-confidence",
    "margin",
    "-margin",
    "entropy",
    "-entropy",
    "priority",
    "-priority",
    "example",
)


def embedding_progress(*, project: Project, encoder_key: str) -> dict:
    total = Example.objects.filter(project=project).count()
    embedded = ExampleEmbedding.objects.filter(project=project, encoder_key=encoder_key).count()
    return {"encoder": encoder_key, "total": total, "embedded": min(embedded, total), "done": embedded >= total}


def enough_labels(*, project_id: int, min_labels: int) -> bool:
    """Before the first version: at least `min_labels` accepted labels over two labels or more."""
    rows, classes = labels_readiness(project_id=project_id, min_labels=min_labels)
    return rows >= min_labels and len(classes) >= 2


def labels_readiness(*, project_id: int, min_labels: int) -> tuple[int, list[int]]:
    """(accepted labels, at most `min_labels`; the labels used, at most two): what
    `enough_labels` judges, for the debounce to know how far a project is from it. Bounded
    counts: the debounce asks again only when Redis says the labels since may be enough."""
    accepted = Annotation.labels.through.objects.filter(
        annotation__project_id=project_id, annotation__status=Annotation.Status.ACCEPTED
    )
    rows = accepted[:min_labels].count()
    classes = list(accepted.order_by().values_list("label_id", flat=True).distinct()[:2]) if rows else []
    return rows, classes


def learning_curve(*, version: ModelVersion) -> dict:
    """Per-epoch loss and held-out accuracy of this version, and held-out accuracy against the
    number of labels across this version and its predecessors."""
    earlier = (
        ModelVersion.objects.filter(project_id=version.project_id, sequence__lte=version.sequence)
        .order_by("sequence")
        .values("sequence", "n_annotations", "n_examples", "metrics", "created_at", "loop", "kind")
    )
    return {
        "version": version.sequence,
        "epochs": version.metrics.get("history", []),
        "versions": [
            {
                "sequence": v["sequence"],
                "n_annotations": v["n_annotations"],
                "n_examples": v["n_examples"],
                "accuracy": v["metrics"].get("accuracy"),
                "macro_f1": v["metrics"].get("macro_f1"),
                "eval_size": v["metrics"].get("eval_size"),
                "created_at": v["created_at"],
                "loop": v["loop"],
                "kind": v["kind"],
            }
            for v in earlier
        ],
    }


# --- what a run trains and evaluates on -------------------------------------------------


def in_holdout(text_hash: str, share: float) -> bool:
    """The fixed rule: an example is held out when the first 32 bits of its text hash fall in
    the lowest `share` of the range. It never changes for an example, whatever its labels."""
    return int(text_hash[:8], 16) < share * 0x1_0000_0000


def gold_eval_size(*, project: Project, config: ProjectTrainingConfig) -> int:
    """How many gold texts are held out for evaluation: the holdout share of them, at most
    `max_gold_eval`, so a project whose every text carries gold still has texts to train on
    (held out, a labeled text teaches nothing). The choice is by text hash, so it is fixed."""
    n_gold = Example.objects.filter(project=project, gold_label__isnull=False).count()
    # round first: 0.2 * 10 is 2.0000000000000004 in floating point, and must hold out 2
    return min(config.max_gold_eval, math.ceil(round(config.holdout_share * n_gold, 9)))


@dataclass
class Snapshot:
    taken_at: datetime
    label_ids: list[int]
    label_names: list[str]
    train_example_ids: list[int] = field(default_factory=list)
    train_targets: np.ndarray | None = None  # [n, k] vote shares
    manifest: list[tuple[int, int, int]] = field(default_factory=list)  # (annotation, example, label)
    n_annotators: int = 0
    eval_example_ids: list[int] = field(default_factory=list)
    eval_y: np.ndarray | None = None  # [m] class index
    eval_source: str = "none"  # gold | holdout | none
    n_machine_labels: int = 0
    aggregation: str = Aggregation.MAJORITY  # how train_targets were made from the labels

    @property
    def n_classes_labeled(self) -> int:
        if self.train_targets is None or not len(self.train_targets):
            return 0
        return int((self.train_targets.sum(0) > 0).sum())


def training_snapshot(*, project: Project, config: ProjectTrainingConfig) -> Snapshot:
    """The accepted annotations of this moment (one SQL statement, so one consistent snapshot),
    split into training data and the evaluation split. `taken_at` is read right after that
    statement: every annotation in the snapshot was created before it (an annotation created
    just before it but committed just after is not in it: it did not exist yet for the run).

    Longer than most functions here because the one statement's rows feed every part of the
    snapshot (votes, gold items, the split, the manifest): split up, each part would re-read
    or re-walk them."""
    labels = list(Label.objects.filter(project=project).order_by("order", "id").values_list("id", "name"))
    label_ids = [lid for lid, _ in labels]
    col = {lid: i for i, lid in enumerate(label_ids)}
    k = len(label_ids)
    rows = list(
        Annotation.labels.through.objects.filter(
            annotation__project=project, annotation__status=Annotation.Status.ACCEPTED
        )
        .order_by("annotation_id", "label_id")
        .values_list(
            "annotation_id",
            "annotation__example_id",
            "annotation__annotator_id",
            "annotation__source",
            "label_id",
            "annotation__example__text_hash",
        )
    )
    taken_at = timezone.now()
    gold = list(
        Example.objects.filter(project=project, gold_label__isnull=False)
        .order_by("text_hash")
        .values_list("id", "gold_label_id")[: gold_eval_size(project=project, config=config)]
    )
    snap = Snapshot(taken_at=taken_at, label_ids=label_ids, label_names=[n for _, n in labels])

    human_examples = {ex for _, ex, _, source, _, _ in rows if source == Annotation.Source.HUMAN}
    # A reviewer's adjudicated label (annotation.review) outranks the vote on its text.
    reviewed = {ex for _, ex, _, source, _, _ in rows if source == Annotation.Source.REVIEW}
    usable = []
    for ann, ex, annotator, source, label, thash in rows:
        if ex in reviewed and source != Annotation.Source.REVIEW:
            continue
        if source == Annotation.Source.MACHINE and (ex in human_examples or not config.train_on_machine_labels):
            continue  # a human label outranks the machine's; machine labels may be switched off
        usable.append((ann, ex, annotator, source, label, thash))

    votes: dict[int, np.ndarray] = {}
    hashes: dict[int, str] = {}
    for _, ex, _, _, label, thash in usable:
        votes.setdefault(ex, np.zeros(k, dtype=np.float32))[col[label]] += 1.0
        hashes[ex] = thash

    if gold:
        snap.eval_source = "gold"
        eval_ids = {ex for ex, _ in gold}
        snap.eval_example_ids = [ex for ex, _ in gold]
        snap.eval_y = np.asarray([col[g] for _, g in gold], dtype=np.int64)
    else:
        eval_ids = {ex for ex in votes if in_holdout(hashes[ex], config.holdout_share)}
        ordered = sorted(eval_ids)
        snap.eval_source = "holdout" if ordered else "none"
        snap.eval_example_ids = ordered
        # Ties go to the label listed first in the project (deterministic).
        snap.eval_y = np.asarray([int(votes[ex].argmax()) for ex in ordered], dtype=np.int64)

    train_ids = sorted(ex for ex in votes if ex not in eval_ids)
    snap.train_example_ids = train_ids
    snap.train_targets = (
        np.stack([votes[ex] / votes[ex].sum() for ex in train_ids]) if train_ids else np.zeros((0, k), np.float32)
    )
    train_set = set(train_ids)
    if config.aggregation == Aggregation.DAWID_SKENE and project.label_mode == Project.LabelMode.SINGLE:
        snap.aggregation = Aggregation.DAWID_SKENE
        snap.train_targets = _dawid_skene_targets(usable, train_ids, col, k)
    snap.manifest = [(ann, ex, label) for ann, ex, _, _, label, _ in usable if ex in train_set]
    snap.n_annotators = len({a for _, ex, a, s, _, _ in usable if ex in train_set and s == Annotation.Source.HUMAN})
    snap.n_machine_labels = len(
        {ann for ann, ex, _, s, _, _ in usable if ex in train_set and s == Annotation.Source.MACHINE}
    )
    return snap


def _dawid_skene_targets(usable, train_ids: list[int], col: dict[int, int], k: int) -> np.ndarray:
    """Dawid-Skene posteriors of the training texts from their labels (the machine, when its
    labels are used, is one more annotator with its own confusion matrix)."""
    if not train_ids:
        return np.zeros((0, k), np.float32)
    row_of = {ex: i for i, ex in enumerate(train_ids)}
    coders: dict = {}
    unit, coder, value = [], [], []
    for _, ex, annotator, source, label, _ in usable:
        if ex in row_of:
            unit.append(row_of[ex])
            coder.append(coders.setdefault((source, annotator), len(coders)))
            value.append(col[label])
    result = label_aggregation.dawid_skene(unit, coder, value, len(train_ids), len(coders), k)
    return result.posteriors.astype(np.float32)


# --- bulk accept: what a threshold would take, and how right the model is there --------------


def acceptable_predictions(
    *, project: Project, min_confidence: float, label_ids: Sequence[int] | None = None
) -> QuerySet[Prediction]:
    """Predictions a bulk accept at `min_confidence` takes: texts nobody's label is accepted
    on yet, predicted with a label that is not retired."""
    qs = Prediction.objects.filter(project=project, confidence__gte=min_confidence, label__retired=False)
    if label_ids:
        qs = qs.filter(label_id__in=label_ids)
    return qs.exclude(
        Exists(Annotation.objects.filter(example=OuterRef("example_id"), status=Annotation.Status.ACCEPTED))
    )


def evaluation_labels(*, project: Project, config: ProjectTrainingConfig) -> dict[int, int]:
    """{example id: its evaluation label} as a run would choose them now (training_snapshot):
    the gold texts held out, or else the labeled texts whose hash falls in the holdout share,
    with their majority label (ties to the label listed first; a human label outranks machine
    labels). Read for the bulk-accept preview, which compares them to the current predictions."""
    gold = list(
        Example.objects.filter(project=project, gold_label__isnull=False)
        .order_by("text_hash")
        .values_list("id", "gold_label_id")[: gold_eval_size(project=project, config=config)]
    )
    if gold:
        return dict(gold)
    bound = math.ceil(config.holdout_share * 0x1_0000_0000)
    if bound <= 0:
        return {}
    rows = (
        Annotation.labels.through.objects.filter(
            annotation__project=project,
            annotation__status=Annotation.Status.ACCEPTED,
            # hex digits compare as the number they spell: a prefix filter in SQL, checked below
            annotation__example__text_hash__lt=f"{min(bound, 0xFFFFFFFF):08x}g",
        )
        .order_by()
        .values_list("annotation__example_id", "annotation__source", "label_id", "annotation__example__text_hash")
    )
    order = {lid: i for i, lid in enumerate(Label.objects.filter(project=project).values_list("id", flat=True))}
    votes: dict[int, dict[str, dict[int, int]]] = {}
    for ex, source, label, thash in rows:
        if in_holdout(thash, config.holdout_share):
            by_label = votes.setdefault(ex, {}).setdefault(source, {})
            by_label[label] = by_label.get(label, 0) + 1
    chosen = {}
    for ex, by_source in votes.items():
        counts = by_source.get(Annotation.Source.HUMAN) or by_source.get(Annotation.Source.MACHINE) or {}
        if counts:
            chosen[ex] = max(counts, key=lambda lid: (counts[lid], -order.get(lid, 0)))
    return chosen


@dataclass
class AcceptPreview:
    min_confidence: float
    count: int  # texts the accept would take (before the limit)
    distribution: list[tuple[str, int]]  # predicted label name, texts
    sample: list[Prediction]  # the least confident it would take: the riskiest
    eval_source: str  # gold | holdout | none
    eval_total: int  # evaluation texts with a current prediction
    eval_covered: int  # of them, predicted at or above the threshold
    eval_correct: int
    accuracy: float | None  # eval_correct / eval_covered
    accuracy_interval: tuple[float, float] | None
    evaluation: dict | None  # version_evaluation of the current version
    version: ModelVersion | None


def accept_preview(
    *, project: Project, min_confidence: float, label_ids: Sequence[int] | None = None, sample_size: int = 10
) -> AcceptPreview:
    """What a bulk accept at `min_confidence` would take (how many texts, their predicted labels,
    a sample of the least confident), and the model's accuracy at that confidence: on the
    evaluation texts (training's own rule, evaluation_labels), the share of those predicted at
    or above the threshold whose prediction matches their gold or majority label. Per-text
    predictions of the evaluation set are not stored with a version, so this reads the current
    predictions (the current version's, which did not train on these texts)."""
    config = training_config(project=project)
    version = current_version(project=project)
    candidates = acceptable_predictions(project=project, min_confidence=min_confidence, label_ids=label_ids)
    names = dict(Label.objects.filter(project=project).values_list("id", "name"))
    distribution = [
        (names.get(lid, "?"), n)
        for lid, n in candidates.order_by().values("label_id").annotate(n=Count("pk")).values_list("label_id", "n")
    ]
    distribution.sort(key=lambda row: (-row[1], row[0]))
    sample = list(candidates.select_related("example", "label").order_by("confidence", "example_id")[:sample_size])
    truth = evaluation_labels(project=project, config=config) if version is not None else {}
    predicted = Prediction.objects.filter(project=project, example_id__in=list(truth)).values_list(
        "example_id", "label_id", "confidence"
    )
    total = covered = correct = 0
    for ex, lid, confidence in predicted:
        total += 1
        if confidence >= min_confidence:
            covered += 1
            correct += int(truth[ex] == lid)
    gold = Example.objects.filter(project=project, gold_label__isnull=False).exists()
    return AcceptPreview(
        min_confidence=min_confidence,
        count=sum(n for _, n in distribution),
        distribution=distribution,
        sample=sample,
        eval_source=("gold" if gold else "holdout") if truth else "none",
        eval_total=total,
        eval_covered=covered,
        eval_correct=correct,
        accuracy=correct / covered if covered else None,
        accuracy_interval=wilson_interval(correct, covered),
        evaluation=version_evaluation(version=version) if version is not None else None,
        version=version,
    )


def accept_batches(*, project: Project) -> QuerySet[AcceptBatch]:
    return AcceptBatch.objects.filter(project=project).select_related("version", "created_by", "undone_by")
