"""Agreement figures of a project's labels: reads (never writes) that turn accepted human
annotations into the long arrays of core.agreement and core.aggregation.

Who may see what is the caller's business (the API and pages check roles): `project_agreement`
and `annotator_reliability` name every annotator and are for admins and auditors only;
`own_agreement` is one annotator's own figures, with nobody else's and no gold label in it.
docs/agreement.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Count, Max, QuerySet

from core import aggregation
from core import agreement as ag

from .models import Annotation, Example, Label, Project

PERIODS = ("week", "month")
NO_OVERLAP = "No text has labels from two annotators yet: there is no overlap to measure agreement on."


@dataclass
class Ratings:
    """One row per accepted human annotation (a rating): its text, annotator and value.

    `value` is the label's index in `label_names` for single-label projects, or for multi-label
    projects the code of its label set (`masks[value]` is the set as a bitmask over the labels).
    """

    annotation_ids: np.ndarray
    unit: np.ndarray  # example ids
    coder: np.ndarray  # annotator user ids
    value: np.ndarray
    mask: np.ndarray  # bitmask of the annotation's labels (both modes)
    created_at: list[datetime]
    label_ids: list[int]
    label_names: list[str]
    multi: bool
    gold: np.ndarray  # per rating: the gold label's index, -1 without gold

    def __len__(self) -> int:
        return len(self.unit)


def ratings_for(
    *,
    project: Project,
    annotations: QuerySet | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    label_of: dict[int, set[int]] | None = None,
) -> Ratings:
    """The accepted human annotations of the project (or of `annotations`, a queryset of the
    project's annotations whatever their status now, e.g. a version's manifest), with their
    labels (or the labels in `label_of`: annotation id -> label ids, as a manifest recorded
    them). Two queries."""
    labels = list(Label.objects.filter(project=project).order_by("order", "id").values_list("id", "name"))
    index = {lid: i for i, (lid, _) in enumerate(labels)}
    qs = Annotation.objects.filter(project=project, source=Annotation.Source.HUMAN)
    qs = (
        qs.filter(pk__in=annotations.values("pk"))
        if annotations is not None
        else qs.filter(status=Annotation.Status.ACCEPTED)
    )
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    rows = list(
        qs.order_by("pk").values_list("pk", "example_id", "annotator_id", "created_at", "example__gold_label_id")
    )
    ann_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    if label_of is None:
        links = Annotation.labels.through.objects.filter(annotation_id__in=qs.values("pk")).values_list(
            "annotation_id", "label_id"
        )
    else:
        links = ((a, lid) for a, lids in label_of.items() for lid in lids)
    mask_of: dict[int, int] = {}
    for a, lid in links:
        mask_of[a] = mask_of.get(a, 0) | (1 << index[lid])
    masks = np.fromiter((mask_of.get(int(a), 0) for a in ann_ids), dtype=np.int64, count=len(rows))
    multi = project.label_mode == Project.LabelMode.MULTI
    if multi:
        _, value = ag.unique_inverse(masks)
    else:
        # The one label's index; an annotation without a label (it should not exist) is missing.
        value = np.where(masks > 0, np.log2(np.maximum(masks, 1)).astype(np.int64), -1)
    gold_index = np.fromiter(
        (index.get(r[4], -1) if r[4] is not None else -1 for r in rows), dtype=np.int64, count=len(rows)
    )
    if multi:
        # A gold label is one label: the annotation agrees with it when it chose exactly that set.
        gold = np.where(gold_index >= 0, gold_index, -1)
    else:
        gold = gold_index
    return Ratings(
        annotation_ids=ann_ids,
        unit=np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
        coder=np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows)),
        value=np.asarray(value, dtype=np.int64),
        mask=masks,
        created_at=[r[3] for r in rows],
        label_ids=[lid for lid, _ in labels],
        label_names=[n for _, n in labels],
        multi=multi,
        gold=gold,
    )


def _codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ag.unique_inverse(ids)


def _gold_match(r: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """(value, reference) for the comparison with gold: in multi-label projects a rating matches
    when its set is exactly the gold label (1 = match, 0 = not), else the label indices."""
    if not r.multi:
        return r.value, r.gold
    has = r.gold >= 0
    match = np.where(has, (r.mask == (1 << np.maximum(r.gold, 0))).astype(np.int64), -1)
    return match, np.where(has, 1, -1)


def figures(r: Ratings, *, n_boot: int = ag.DEFAULT_BOOT, seed: int = 0, names: dict[int, str] | None = None) -> dict:
    """Every agreement figure over these ratings (JSON-ready). `names`: annotator id -> name."""
    n_texts = len(ag.unique_inverse(r.unit)[0])
    per_text = np.bincount(_codes(r.unit)[1]) if len(r) else np.zeros(0, np.int64)
    out: dict = {
        "label_mode": "multi" if r.multi else "single",
        "n_annotations": len(r),
        "n_texts": n_texts,
        "n_texts_with_overlap": int((per_text >= 2).sum()),
        "n_annotators": len(ag.unique_inverse(r.coder)[0]),
        "n_boot": n_boot,
        "confidence": ag.CONFIDENCE,
    }
    out["note"] = NO_OVERLAP if not out["n_texts_with_overlap"] else ""
    if not len(r):
        empty = ag.Estimate(None, note="no labels").as_dict()
        out.update(alpha=empty, percent_agreement=empty, fleiss_kappa=empty, per_label=[], pairs=[], annotators=[])
        return out
    kw = {"n_boot": n_boot, "seed": seed}
    out["alpha"] = ag.alpha(r.unit, r.value, **kw).as_dict()
    if r.multi:
        out["alpha_masi"] = ag.alpha_masi(r.unit, r.mask, **kw).as_dict()
    out["percent_agreement"] = ag.percent_agreement(r.unit, r.value, **kw).as_dict()
    out["fleiss_kappa"] = ag.fleiss_kappa(r.unit, r.value, **kw).as_dict()
    out["per_label"] = [
        {"label": name, "alpha": est.as_dict(), "n_chosen": int(((r.mask >> j) & 1).sum())}
        for j, (name, est) in enumerate(
            zip(r.label_names, ag.alpha_per_label(r.unit, r.mask, len(r.label_names), **kw), strict=True)
        )
    ]
    coder_ids, coder = _codes(r.coder)
    names = names if names is not None else _usernames(coder_ids)
    out["pairs"] = [
        {
            "a": names.get(int(coder_ids[p.coder_a]), str(coder_ids[p.coder_a])),
            "b": names.get(int(coder_ids[p.coder_b]), str(coder_ids[p.coder_b])),
            "kappa": p.estimate.as_dict(),
            "agreement": p.agreement,
        }
        for p in ag.cohen_pairs(r.unit, coder, r.value, **kw)
    ]
    others = {f.coder: f for f in ag.coder_vs_others(r.unit, coder, r.value, **kw)}
    value, reference = _gold_match(r)
    gold = {f.coder: f for f in ag.coder_vs_reference(coder, value, reference, **kw)}
    counts = np.bincount(coder, minlength=len(coder_ids))
    out["annotators"] = [
        {
            "annotator": names.get(int(cid), str(cid)),
            "n_labels": int(counts[c]),
            "vs_others": _coder(others.get(c)),
            "vs_gold": _gold(gold.get(c)),
        }
        for c, cid in enumerate(coder_ids)
    ]
    return out


def _coder(f) -> dict:
    if f is None:
        return {"agreement": ag.Estimate(None, note="no text shared with another annotator").as_dict(), "kappa": None}
    return {"agreement": f.agreement.as_dict(), "kappa": f.kappa.as_dict()}


def _gold(f) -> dict | None:
    if f is None:
        return None
    return {"accuracy": f.accuracy.as_dict(), "kappa": f.kappa.as_dict()}


def _usernames(ids) -> dict[int, str]:
    user = get_user_model()
    return dict(user.objects.filter(pk__in=[int(i) for i in ids]).values_list("pk", user.USERNAME_FIELD))


def period_start(moment: datetime, period: str) -> date:
    day = moment.date()
    return day - timedelta(days=day.weekday()) if period == "week" else day.replace(day=1)


def _unit_periods(r: Ratings, period: str) -> np.ndarray:
    """Each rating's period: the period in which its text got its last rating here (when its
    overlap was complete), so a text's labels are compared within one period."""
    starts = np.array([period_start(t, period).toordinal() for t in r.created_at], dtype=np.int64)
    uniq, unit = ag.unique_inverse(r.unit)
    last = np.full(len(uniq), -1, dtype=np.int64)
    np.maximum.at(last, unit, starts)
    return last[unit]


def by_period(r: Ratings, *, period: str = "week", n_boot: int = ag.DEFAULT_BOOT, seed: int = 0) -> list[dict]:
    if not len(r):
        return []
    of = _unit_periods(r, period)
    rows = []
    for p in ag.unique_inverse(of)[0]:
        sel = of == p
        rows.append(
            {
                "period": date.fromordinal(int(p)).isoformat(),
                "n_annotations": int(sel.sum()),
                "alpha": ag.alpha(r.unit[sel], r.value[sel], n_boot=n_boot, seed=seed).as_dict(),
                "percent_agreement": ag.percent_agreement(
                    r.unit[sel], r.value[sel], n_boot=n_boot, seed=seed
                ).as_dict(),
            }
        )
    return rows


def project_agreement(
    *,
    project: Project,
    label_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    period: str = "week",
    n_boot: int = ag.DEFAULT_BOOT,
    seed: int = 0,
) -> dict:
    """Admins and auditors: the project's figures, per label, per pair, per annotator (against
    the others and against gold) and per period. With `label_id`, only texts someone gave that
    label (its per-label binary alpha is in `per_label` either way)."""
    r = ratings_for(project=project, since=since, until=until)
    if label_id is not None:
        j = r.label_ids.index(label_id)
        texts = ag.unique_inverse(r.unit[(r.mask >> j) & 1 == 1])[0]
        r = _subset(r, np.isin(r.unit, texts))
    out = figures(r, n_boot=n_boot, seed=seed)
    out["periods"] = by_period(r, period=period, n_boot=n_boot, seed=seed)
    out["period"] = period
    return out


CACHE_SECONDS = 3600


def labels_fingerprint(*, project: Project) -> str:
    """Changes whenever an accepted human label is added, retracted, rejected or relabeled
    (a new annotation row), or a gold label changes: the key of cached figures."""
    qs = Annotation.objects.filter(project=project, source=Annotation.Source.HUMAN)
    row = qs.aggregate(n=Count("pk"), top=Max("pk"), changed=Max("status_changed_at"))
    gold = Example.objects.filter(project=project, gold_label__isnull=False).count()
    return f"{row['n']}:{row['top']}:{row['changed'] and row['changed'].isoformat()}:{gold}"


def project_figures_cached(*, project: Project, n_boot: int = ag.DEFAULT_BOOT, **kwargs) -> dict:
    """project_agreement, cached until the project's labels change (the dashboard's and the
    Agreement page's: computing is about a second per 100,000 labels, docs/agreement.md)."""
    scope = f"{project.pk}:{project.created_at.isoformat()}:{n_boot}:{sorted(kwargs.items())}"
    key = "agreement:" + hashlib.sha256(f"{scope}:{labels_fingerprint(project=project)}".encode()).hexdigest()
    figures_ = cache.get(key)
    if figures_ is None:
        figures_ = project_agreement(project=project, n_boot=n_boot, **kwargs)
        cache.set(key, figures_, CACHE_SECONDS)
    return figures_


def _subset(r: Ratings, sel: np.ndarray) -> Ratings:
    idx = np.flatnonzero(sel)
    return Ratings(
        annotation_ids=r.annotation_ids[idx],
        unit=r.unit[idx],
        coder=r.coder[idx],
        value=r.value[idx],
        mask=r.mask[idx],
        created_at=[r.created_at[i] for i in idx],
        label_ids=r.label_ids,
        label_names=r.label_names,
        multi=r.multi,
        gold=r.gold[idx],
    )


MIN_OWN_TEXTS = 10


def own_agreement(
    *, project: Project, user, period: str = "week", n_boot: int = 200, seed: int = 0, now: datetime | None = None
) -> dict:
    """One annotator's own figures over time: how often their labels agree with the other
    annotators' labels of the same texts, and with gold where the text has gold. Nothing about
    anyone else (no names, no per-person figures) and no gold label is in it.

    A figure is shown only for periods that have ended and over at least MIN_OWN_TEXTS texts:
    a figure of the open period, or of a handful of texts, would change with each new label and
    so tell which of the annotator's labels matched gold (or another person's label)."""
    current = period_start(now or datetime.now(tz=UTC), period).toordinal()
    r = ratings_for(project=project)
    mine_texts = ag.unique_inverse(r.unit[r.coder == user.pk])[0]
    r = _subset(r, np.isin(r.unit, mine_texts))
    rows = []
    if len(r):
        of = _unit_periods(r, period)
        for p in ag.unique_inverse(of)[0]:
            s = _subset(r, of == p)
            coder_ids, coder = _codes(s.coder)
            me = int(np.searchsorted(coder_ids, user.pk))
            others = {f.coder: f for f in ag.coder_vs_others(s.unit, coder, s.value, n_boot=n_boot, seed=seed)}
            value, reference = _gold_match(s)
            gold = {f.coder: f for f in ag.coder_vs_reference(coder, value, reference, n_boot=n_boot, seed=seed)}
            rows.append(
                {
                    "period": date.fromordinal(int(p)).isoformat(),
                    "n_labels": int((s.coder == user.pk).sum()),
                    "agreement_with_others": _withheld(_coder(others.get(me))["agreement"], int(p) >= current),
                    "gold_accuracy": (
                        _withheld(_gold(gold.get(me))["accuracy"], int(p) >= current) if me in gold else None
                    ),
                }
            )
    return {"period": period, "periods": rows, "confidence": ag.CONFIDENCE, "min_texts": MIN_OWN_TEXTS}


def _withheld(estimate: dict, open_period: bool) -> dict:
    if open_period:
        note = "shown when the period ends (before, it would tell which of your labels matched)"
    elif estimate["value"] is not None and estimate["n_units"] < MIN_OWN_TEXTS:
        note = f"fewer than {MIN_OWN_TEXTS} texts: not shown (it would tell which of your labels matched)"
    else:
        return estimate
    return ag.Estimate(None, n_units=estimate["n_units"], n_pairs=estimate["n_pairs"], note=note).as_dict()


def annotator_reliability(*, project: Project) -> dict:
    """Admins: Dawid-Skene's estimate of each annotator's accuracy and confusion matrix over
    the project's accepted human labels (single-label projects)."""
    if project.label_mode != Project.LabelMode.SINGLE:
        return {
            "applicable": False,
            "note": "Dawid-Skene is computed for single-label projects only.",
            "annotators": [],
        }
    r = ratings_for(project=project)
    keep = r.value >= 0
    if not keep.any():
        return {"applicable": True, "note": "No labels yet.", "annotators": [], "labels": r.label_names}
    _, unit = _codes(r.unit[keep])
    coder_ids, coder = _codes(r.coder[keep])
    k = len(r.label_names)
    ds = aggregation.dawid_skene(unit, coder, r.value[keep], int(unit.max()) + 1, len(coder_ids), k)
    names = _usernames(coder_ids)
    counts = np.bincount(coder, minlength=len(coder_ids))
    accuracy = ds.coder_accuracy()
    mv = aggregation.majority_vote(unit, r.value[keep], int(unit.max()) + 1, k).argmax(1)
    changed = int((ds.posteriors.argmax(1) != mv).sum())
    return {
        "applicable": True,
        "note": "" if ds.converged else f"EM stopped after {ds.iterations} iterations without converging.",
        "labels": r.label_names,
        "priors": [float(p) for p in ds.priors],
        "iterations": ds.iterations,
        "n_texts": int(unit.max()) + 1,
        "texts_where_dawid_skene_differs_from_majority": changed,
        "annotators": [
            {
                "annotator": names.get(int(cid), str(cid)),
                "n_labels": int(counts[c]),
                "estimated_accuracy": float(accuracy[c]),
                "confusion": [[float(x) for x in row] for row in ds.confusion[c]],
            }
            for c, cid in enumerate(coder_ids)
        ],
    }


def flat_rows(fig: dict):
    """(scope, subject, measure, estimate dict) for every figure of `figures`/`project_agreement`:
    the rows of the CSV export."""
    for measure in ("alpha", "alpha_masi", "fleiss_kappa", "percent_agreement"):
        if measure in fig:
            yield "project", "", measure, fig[measure]
    for row in fig.get("per_label", []):
        yield "label", row["label"], "alpha_binary", row["alpha"]
    for a in fig.get("annotators", []):
        yield "annotator", a["annotator"], "agreement_with_others", a["vs_others"]["agreement"]
        if a["vs_others"]["kappa"]:
            yield "annotator", a["annotator"], "kappa_with_others", a["vs_others"]["kappa"]
        if a["vs_gold"]:
            yield "annotator", a["annotator"], "gold_accuracy", a["vs_gold"]["accuracy"]
            yield "annotator", a["annotator"], "gold_kappa", a["vs_gold"]["kappa"]
    for p in fig.get("pairs", []):
        yield "pair", f"{p['a']} / {p['b']}", "cohen_kappa", p["kappa"]
    for p in fig.get("periods", []):
        yield "period", p["period"], "alpha", p["alpha"]
        yield "period", p["period"], "percent_agreement", p["percent_agreement"]
