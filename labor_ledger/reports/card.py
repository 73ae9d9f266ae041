"""The Labor Card of a model version: what human labor is congealed in it, and what it cost whom.

Built from the ledger (labor_ledger_ledgerentry) joined with the version's manifest
(training_manifestentry), in one consistent snapshot named by the ledger's chain head:

- the per-version labor frame of frames.versions_frame (versions 1..N: embodied labor, what
  each added to its parent, the books at each training snapshot), and
- one query for what only this version's card shows (labels held out of training, contested
  texts, outvoted labels, annotators whose settled periods needed a top-up).

The result is a plain, JSON-ready dict (money as strings, exact; hours as numbers) that the API
returns as it is and the page renders. It is cached per version, chain head and pseudonym key:
a new ledger entry moves the head, and with it the cache key. docs/labor-card.md.

The card only reads: the per-version labor index it needs is written by the worker when a
version is registered (labor_ledger/labor_index.py). A card of a version not indexed yet raises
`labor_index.VersionNotIndexed` (the page and the API say so, with HTTP 409).
"""

from __future__ import annotations

import re
from decimal import Decimal

import pandas as pd
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from annotation.models import Project
from labor_ledger import charts, money, pseudonyms, selectors
from labor_ledger.models import TimeCategory
from training import selectors as training_selectors

from .columns import MONEY_PLACES
from .frames import version_rows, versions_frame
from .sql import LedgerHead, consistent_read, ledger_checkpoint, ledger_head
from .wellbeing import wellbeing_section

# 5: labor.review (issue 16); 6: wellbeing (issue 17); 7: disagreement (issue 16); 8: checkpoint (issue 15)
CARD_FORMAT_VERSION = 8
CACHE_SECONDS = 24 * 3600
STACK_TOP_ANNOTATORS = 10
UNUSED_CATEGORIES = ("rejected", "retracted")
PROJECTED = "projected, period open"
MACHINE_ROW = "machine-accepted labels"
UNPAID_SHOWN = ("skipped", "expired", "rejected", "retracted", "instruction_reading", "between_tasks")
CATEGORY_LABELS = dict(TimeCategory.choices)
AGREEMENT_BOOT = 300


def _extras_sql() -> str:
    """One row: labels accepted before the snapshot but left out of the training set (held out),
    labels on texts whose training labels disagree (contested) and those outvoted there, and
    how many of the version's annotators had a settled period topped up before it was trained.
    Held out = (all accepted labels' time before the snapshot) - (that of the version's labels):
    two sums, not a grouping by label. Long because it is one statement: the CTEs are its steps."""
    submitted = "e.time_category = 'submitted' AND e.annotation_id IS NOT NULL AND e.occurred_at < %(snapshot)s"
    live = "CASE WHEN e.kind = 'reversal' THEN -1 ELSE 1 END"
    return f"""
    WITH RECURSIVE
    ancestry (id) AS (
      SELECT mv.id FROM training_modelversion mv WHERE mv.id = %(version)s
      UNION ALL
      SELECT mv.parent_id FROM ancestry a JOIN training_modelversion mv ON mv.id = a.id WHERE mv.parent_id IS NOT NULL
    ),
    manifest AS (SELECT DISTINCT m.annotation_id FROM training_manifestentry m WHERE m.version_id = %(version)s),
    accepted_then AS (
      SELECT COALESCE(SUM({live}), 0) AS labels,
             COALESCE(SUM(e.active_seconds), 0) AS active, COALESCE(SUM(e.wall_seconds), 0) AS wall,
             COALESCE(SUM({live}) FILTER (WHERE m.annotation_id IS NOT NULL), 0) AS trained_labels,
             COALESCE(SUM(e.active_seconds) FILTER (WHERE m.annotation_id IS NOT NULL), 0) AS trained_active,
             COALESCE(SUM(e.wall_seconds) FILTER (WHERE m.annotation_id IS NOT NULL), 0) AS trained_wall
      FROM labor_ledger_ledgerentry e
      LEFT JOIN manifest m ON m.annotation_id = e.annotation_id
      WHERE e.project_id = %(project)s AND {submitted}
    ),
    contested_texts AS (
      SELECT m.example_id FROM training_manifestentry m WHERE m.version_id = %(version)s
      GROUP BY m.example_id HAVING MIN(m.label_id) <> MAX(m.label_id)
    ),
    contested_rows AS (
      SELECT m.annotation_id, m.example_id, m.label_id FROM training_manifestentry m
      WHERE m.version_id = %(version)s AND m.example_id IN (SELECT example_id FROM contested_texts)
    ),
    votes AS (SELECT example_id, label_id, COUNT(*) AS n FROM contested_rows GROUP BY example_id, label_id),
    tops AS (SELECT example_id, MAX(n) AS top FROM votes GROUP BY example_id),
    scored AS (
      SELECT r.annotation_id, MIN(r.example_id) AS example_id,
             MAX(CASE WHEN vo.n = t.top THEN 1 ELSE 0 END) AS with_majority
      FROM contested_rows r
      JOIN votes vo ON vo.example_id = r.example_id AND vo.label_id = r.label_id
      JOIN tops t ON t.example_id = r.example_id
      GROUP BY r.annotation_id
    ),
    label_time AS (
      SELECT e.annotation_id, SUM(e.active_seconds) AS active, SUM(e.wall_seconds) AS wall,
             SUM(e.amount) AS amount
      FROM labor_ledger_ledgerentry e
      WHERE e.project_id = %(project)s AND e.annotation_id IN (SELECT annotation_id FROM scored)
      GROUP BY e.annotation_id
    ),
    disputed AS (
      SELECT COUNT(*) AS contested_labels,
             COALESCE(SUM(lt.active), 0) AS contested_active, COALESCE(SUM(lt.wall), 0) AS contested_wall,
             COALESCE(SUM(lt.amount), 0) AS contested_amount,
             COUNT(DISTINCT s.example_id) AS contested_texts,
             COUNT(*) FILTER (WHERE s.with_majority = 0) AS outvoted_labels,
             COALESCE(SUM(lt.active) FILTER (WHERE s.with_majority = 0), 0) AS outvoted_active,
             COALESCE(SUM(lt.wall) FILTER (WHERE s.with_majority = 0), 0) AS outvoted_wall,
             COALESCE(SUM(lt.amount) FILTER (WHERE s.with_majority = 0), 0) AS outvoted_amount
      FROM scored s LEFT JOIN label_time lt ON lt.annotation_id = s.annotation_id
    ),
    contributors AS (
      SELECT d.annotator_id FROM labor_ledger_versionlabeldelta d
      WHERE d.version_id IN (SELECT id FROM ancestry) AND d.human
      GROUP BY d.annotator_id HAVING SUM(d.sign) > 0
    ),
    topped AS (
      SELECT COUNT(DISTINCT s.annotator_id) AS annotators
      FROM labor_ledger_settlement s
      WHERE s.project_id = %(project)s AND s.top_up > 0 AND s.period < %(snapshot_day)s
        AND s.annotator_id IN (SELECT annotator_id FROM contributors)
    )
    SELECT h.labels - h.trained_labels AS held_out_labels, h.active - h.trained_active AS held_out_active,
           h.wall - h.trained_wall AS held_out_wall,
           d.contested_labels, d.contested_active, d.contested_wall, d.contested_amount, d.contested_texts,
           d.outvoted_labels, d.outvoted_active, d.outvoted_wall, d.outvoted_amount,
           t.annotators AS topped_up_annotators
    FROM accepted_then h CROSS JOIN disputed d CROSS JOIN topped t
    """  # noqa: S608 - constants of this module; values are bound parameters


# --- small helpers ------------------------------------------------------------------------------


def _hours(seconds) -> float:
    return round(float(Decimal(seconds or 0) / money.SECONDS_PER_HOUR), 4)


def _money(value) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return str(Decimal(value).quantize(MONEY_PLACES))


def _num(value, places: int = 6):
    if value is None or pd.isna(value):
        return None
    return round(float(value), places)


def _int(value) -> int:
    return int(value or 0)


def cpu_cores(device_name: str) -> int:
    """Threads a CPU run used, from training's device name ("cpu: x86_64, 2 threads")."""
    found = re.search(r"(\d+)\s+threads?", device_name or "")
    return max(1, int(found.group(1))) if found else 1


def energy_estimate(*, device: str, device_name: str, metrics: dict, seconds: float) -> dict:
    """Energy of the version's compute (embedding + training + scoring seconds), in Wh.

    Measured when the version recorded it: metrics["energy"]["joules"], or a mean
    metrics["gpu_power_watts"] from nvidia-smi power draw (times the compute seconds). Otherwise
    an estimate: TALLY_CPU_WATTS_PER_CORE x cores x seconds on a CPU (every thread busy: an
    upper bound), or TALLY_GPU_WATTS x seconds on a GPU; both default to the "Any" rows of the
    Green Algorithms TDP tables (12 W per CPU core, 200 W per GPU; Lannelongue, Grealey &
    Inouye, Advanced Science 2021). The machine's idle draw, memory, cooling (PUE) and the
    embedding cache reused from earlier runs are left out.
    """
    recorded = metrics.get("energy") if isinstance(metrics.get("energy"), dict) else {}
    if recorded.get("joules") is not None:
        joules = float(recorded["joules"])
        basis = "measured"
        how = f"recorded by the training run ({recorded.get('source', 'measured')})"
    elif metrics.get("gpu_power_watts") is not None:
        watts = float(metrics["gpu_power_watts"])
        joules = watts * seconds
        basis = "measured"
        how = f"nvidia-smi mean power draw {watts:.1f} W x {seconds:.1f} s of compute"
    elif device == "cuda":
        watts = float(settings.TALLY_GPU_WATTS)
        joules = watts * seconds
        basis = "estimate"
        how = f"{watts:.0f} W per GPU (TALLY_GPU_WATTS; no power draw was recorded) x {seconds:.1f} s"
    else:
        per_core = float(settings.TALLY_CPU_WATTS_PER_CORE)
        cores = cpu_cores(device_name)
        joules = per_core * cores * seconds
        basis = "estimate"
        how = f"{per_core:g} W per core (TALLY_CPU_WATTS_PER_CORE) x {cores} cores x {seconds:.1f} s, every core busy"
    return {"energy_wh": round(joules / 3600, 4), "basis": basis, "method": how}


def pool_embedding(version) -> list[dict]:
    """The background embedding chunks attributed to `version` (training.models.EmbeddingWork:
    each chunk goes to the first version registered after it), per device they ran on."""
    from training.models import EmbeddingWork

    rows = (
        EmbeddingWork.objects.filter(version_id=version.pk)
        .values("device", "device_name")
        .annotate(seconds=Sum("seconds"), texts=Sum("texts"), chunks=Count("id"))
        .order_by("device", "device_name")
    )
    return [{**r, "seconds": round(float(r["seconds"]), 3)} for r in rows]


def compute_section(version) -> dict:
    """Training, the run's own embedding, the pool embedding attributed to the version, and
    scoring, with the energy of each part on the device it ran on."""
    own_seconds = float(version.training_seconds + version.embedding_seconds + version.scoring_seconds)
    energy = energy_estimate(
        device=version.device, device_name=version.device_name, metrics=version.metrics or {}, seconds=own_seconds
    )
    pool = pool_embedding(version)
    methods = [energy["method"]]
    energy_wh = energy["energy_wh"]
    for part in pool:
        extra = energy_estimate(
            device=part["device"], device_name=part["device_name"], metrics={}, seconds=part["seconds"]
        )
        energy_wh += extra["energy_wh"]
        methods.append(f"pool embedding on {part['device_name'] or part['device']}: {extra['method']}")
    basis = energy["basis"] if not pool else ("estimate" if energy["basis"] == "estimate" else "measured + estimate")
    pool_seconds = float(version.pool_embedding_seconds)
    return {
        "device": version.device,
        "device_name": version.device_name,
        "training_seconds": round(version.training_seconds, 3),
        "embedding_seconds": round(version.embedding_seconds + pool_seconds, 3),
        "run_embedding_seconds": round(version.embedding_seconds, 3),
        "pool_embedding_seconds": round(pool_seconds, 3),
        "pool_embedding": pool,
        "scoring_seconds": round(version.scoring_seconds, 3),
        "compute_seconds": round(own_seconds + pool_seconds, 3),
        "energy_wh": round(energy_wh, 4),
        "basis": basis,
        "method": "; ".join(methods),
    }


def _annotator_names(ids: list[int], hours: dict[int, float]) -> tuple[dict[int, str], str]:
    """Keyed pseudonyms when TALLY_PSEUDONYM_KEY is set; otherwise ranks by hours on this card
    ("annotator #1" worked most), which say nothing about who it was but change between cards."""
    if pseudonyms.pseudonyms_available():
        return pseudonyms.pseudonym_map(ids), "hmac"
    ranked = sorted(ids, key=lambda i: (-hours.get(i, 0.0), i))
    return {uid: f"annotator #{rank}" for rank, uid in enumerate(ranked, start=1)}, "rank"


# --- the card ---------------------------------------------------------------------------------


def cache_key(version, head: LedgerHead) -> str:
    fingerprint = pseudonyms.key_fingerprint() or "nokey"
    return f"labor-card:v{CARD_FORMAT_VERSION}:{version.pk}:{head.seq}:{head.hash[:16]}:{fingerprint}"


def labor_card(*, version, use_cache: bool = True) -> dict:
    """The card's data for one model version (training.ModelVersion), cached by chain head,
    with the time disputes still open about work up to its snapshot: read fresh each time,
    because filing a dispute does not move the chain head."""
    card = _labor_card(version=version, use_cache=use_cache)
    open_disputes = selectors.open_disputes_count(project=version.project, until_day=version.snapshot_at.date())
    checkpoint = ledger_checkpoint(version.project)  # can be signed without the head moving
    return {**card, "open_time_disputes": open_disputes, "ledger_checkpoint": checkpoint}


def _labor_card(*, version, use_cache: bool) -> dict:
    project = Project.objects.get(pk=version.project_id)
    if use_cache:
        key = cache_key(version, ledger_head(project))
        cached = cache.get(key)
        if cached is not None:
            return cached
    card = build_card(project=project, version=version)
    if use_cache:
        cache.set(cache_key(version, LedgerHead(**card["ledger_head"])), card, CACHE_SECONDS)
    return card


def build_card(*, project: Project, version) -> dict:
    """The card of `version`, uncached: the per-version frame and the card's own query in one
    snapshot, shaped into the JSON the API returns. Raises VersionNotIndexed for a version (or
    an earlier one) whose labor index the worker has not written yet.

    Long because most of it is one dict literal with the card's sections in the order the page
    shows them and docs/labor-card.md describes them: the JSON's shape is readable in one place."""
    with consistent_read():
        head, raw, meta = versions_frame(project, upto=version.sequence)
        with connection.cursor() as cursor:
            cursor.execute(
                _extras_sql(),
                {
                    "project": project.pk,
                    "version": version.pk,
                    "snapshot": version.snapshot_at,
                    "snapshot_day": version.snapshot_at.date(),
                },
            )
            extras = dict(zip([c[0] for c in cursor.description], cursor.fetchone(), strict=True))
        wellbeing = wellbeing_section(project_id=project.pk, before=version.snapshot_at)
    rows = version_rows(raw, meta)
    row = rows[rows["version"] == version.sequence].iloc[0]
    mine = raw[(raw["version_id"] == version.pk) & raw["annotator_id"].notna()]
    # People whose labels the version holds; machine-accepted labels (an admin accepted the
    # model's prediction) carry no labor and get their own row, never a person's.
    contributors = mine[mine["human_labels"] > 0]
    hours_on_card = {int(a): _hours(s) for a, s in zip(mine["annotator_id"], mine["active_seconds"], strict=True)}
    all_ids = sorted({int(a) for a in raw["annotator_id"].dropna().unique()})
    names, naming = _annotator_names(all_ids, hours_on_card)
    currency = project.currency
    compute = compute_section(version)
    parent = version.parent
    unpaid = [
        {
            "category": c,
            "label": CATEGORY_LABELS[c],
            "active_hours": _hours(row[f"unpaid_{c}_active_seconds"]),
            "wall_hours": _hours(row[f"unpaid_{c}_wall_seconds"]),
        }
        for c in UNPAID_SHOWN
    ]
    annotators = []
    for _, a in contributors.sort_values(
        ["active_seconds", "annotator_id"], ascending=[False, True]
    ).iterrows():  # one row per annotator
        annotators.append(
            {
                "annotator": names.get(int(a["annotator_id"]), "?"),
                "labels": _int(a["human_labels"]),
                "active_hours": _hours(a["active_seconds"]),
                "hours_worked": _hours(a["counted_seconds"]),
                "wage_bill": _money(a["wage_bill"]),
                "booked_pay": _money(a["pay"]),
                "projected_top_up": _money(a["projected_top_up"]),
                "effective_hourly_wage": _money(a["effective_hourly_wage"]),
                "floor_hourly_rate": _money(a["floor_hourly_rate"]),
                "below_floor_before_top_up": bool(
                    a["counted_seconds"] > 0 and a["pay_before_top_up"] < a["floor_amount"]
                ),
            }
        )
    machine_labels = _int(row["labels"]) - _int(row["human_labels"])
    machine = {"annotator": MACHINE_ROW, "no_labor": True, "labels": machine_labels} if machine_labels else None
    history = [
        {
            "version": int(r["version"]),
            "accuracy": _num(r["accuracy"]),
            "embodied_hours": _hours(r["active_seconds"]),
            "recorded_hours": _hours(r["recorded_active_seconds"]),
            "labels": _int(r["labels"]),
            "wage_bill": _money(r["wage_bill"]),
        }
        for r in rows.to_dict("records")  # one row per version
    ]
    card = {
        "format_version": CARD_FORMAT_VERSION,
        "project": {"slug": project.slug, "name": project.name, "currency": currency},
        "ledger_head": head.as_dict(),
        "generated_at": timezone.now().isoformat(),
        "annotator_names": naming,
        "scope": {
            "version": version.sequence,
            "parent_version": parent.sequence if parent else None,
            "trained_at": version.created_at.isoformat(),
            "snapshot_at": version.snapshot_at.isoformat(),
            "model_kind": version.kind,
            "loop": version.loop,
            "manifest_hash": version.manifest_hash,
            "examples": version.n_examples,
            "annotations": version.n_annotations,
            "annotators": len(annotators),
            "labels_counted": _int(row["labels"]),
            "human_labels": _int(row["human_labels"]),
            "machine_labels": machine_labels,
            "accuracy": _num(row["accuracy"]),
            "macro_f1": _num(row["macro_f1"]),
            "eval_size": _int(row["eval_size"]) if pd.notna(row["eval_size"]) else None,
            "eval_source": row["eval_source"] if isinstance(row["eval_source"], str) else None,
        },
        "labor": {
            "active_hours": _hours(row["active_seconds"]),
            "wall_hours": _hours(row["wall_seconds"]),
            "hours_worked": _hours(row["counted_seconds"]),
            "annotators": len(annotators),
            "recorded_active_hours": _hours(row["recorded_active_seconds"]),
            "recorded_wall_hours": _hours(row["recorded_wall_seconds"]),
            "unpaid": unpaid,
            # Reviewers' time adjudicating labels (TimeCategory.REVIEW) on the books at training.
            "review": {
                "active_hours": _hours(row["review_active_seconds"]),
                "wall_hours": _hours(row["review_wall_seconds"]),
                "unpaid_active_hours": _hours(row["unpaid_review_active_seconds"]),
            },
            "unpaid_active_hours": _hours(row["recorded_unpaid_active_seconds"]),
            "unpaid_wall_hours": _hours(row["recorded_unpaid_wall_seconds"]),
            "not_used": {
                **{
                    c: {
                        "active_hours": _hours(row[f"{c}_active_seconds"]),
                        "wall_hours": _hours(row[f"{c}_wall_seconds"]),
                    }
                    for c in UNUSED_CATEGORIES
                },
                "held_out": {
                    "labels": _int(extras["held_out_labels"]),
                    "active_hours": _hours(extras["held_out_active"]),
                    "wall_hours": _hours(extras["held_out_wall"]),
                },
                "contested": {
                    "labels": _int(extras["contested_labels"]),
                    "active_hours": _hours(extras["contested_active"]),
                    "wall_hours": _hours(extras["contested_wall"]),
                },
                "outvoted": {
                    "labels": _int(extras["outvoted_labels"]),
                    "active_hours": _hours(extras["outvoted_active"]),
                    "wall_hours": _hours(extras["outvoted_wall"]),
                },
            },
        },
        "wellbeing": wellbeing,
        "pay": {
            "currency": currency,
            "piece_pay": _money(row["piece_pay"]),
            "hourly_pay": _money(row["hourly_pay"]),
            "floor_top_up": _money(row["floor_top_up"]),
            "bonus": _money(row["bonus"]),
            "adjustment": _money(row["adjustment"]),
            "wage_bill": _money(row["wage_bill"]),
            "booked_pay": _money(row["pay"]),
            "projected_top_up": _money(row["projected_top_up"]),
            "projected_label": PROJECTED,
            "direct_pay": _money(row["direct_pay"]),
            "allocated_pay": _money(row["allocated_pay"]),
            "effective_hourly_wage": {
                "p10": _money(row["wage_p10"]),
                "median": _money(row["wage_median"]),
                "p90": _money(row["wage_p90"]),
                "annotators": _int(row["annotators_worked"]),
            },
            "floor_hourly_rate": _money(row["floor_hourly_rate"]),
            "below_floor_before_top_up": _int(row["below_floor_before_top_up"]),
            "topped_up_in_settlement": _int(extras["topped_up_annotators"]),
            "client_price": _money(row["client_amount"]),
            "client_share": _money(row["client_share"]),
        },
        "increment": {
            "parent_version": parent.sequence if parent else None,
            "new_labels": _int(row["new_labels"]),
            "dropped_labels": _int(row["dropped_labels"]),
            "new_active_hours": _hours(row["new_active_seconds"]),
            "new_wall_hours": _hours(row["new_wall_seconds"]),
            "new_wage_bill": _money(row["new_wage_bill"]),
            "accuracy": _num(row["accuracy"]),
            "parent_accuracy": _num(row["parent_accuracy"]),
            "accuracy_change": _num(row["accuracy_change"]),
            "accuracy_change_per_labor_hour": _num(row["accuracy_change_per_labor_hour"], 8),
            "accuracy_change_per_currency_unit": _num(row["accuracy_change_per_currency_unit"], 8),
            "same_evaluation_set": row["same_evaluation_set_as_parent"],
        },
        "disagreement": _disagreement(version, extras, review=row),
        "compute": {**compute, "human_active_hours": _hours(row["active_seconds"])},
        "annotators": annotators,
        "machine_labels_row": machine,
        "history": history,
        "stack": _stack(raw, rows, names),
    }
    return card


def _disagreement(version, extras: dict, *, review) -> dict:
    """What disagreement cost (issue 16 item 7): the version's agreement figures over the texts
    of its manifest, and the labor (hours, money) spent on texts its annotators disagreed on,
    on labels the majority outvoted, and on adjudicating them (the reviewers' time, category
    `review`, on the books when the version was trained)."""
    agreement = training_selectors.version_agreement(version=version, n_boot=AGREEMENT_BOOT)
    return {
        "agreement": {
            key: agreement.get(key)
            for key in (
                "alpha",
                "alpha_masi",
                "percent_agreement",
                "fleiss_kappa",
                "n_texts",
                "n_texts_with_overlap",
                "n_annotations",
                "n_annotators",
                "n_boot",
                "label_mode",
                "aggregation",
                "note",
                "confidence",
            )
            if key in agreement
        },
        "contested_texts": _int(extras["contested_texts"]),
        "contested": {
            "labels": _int(extras["contested_labels"]),
            "active_hours": _hours(extras["contested_active"]),
            "wall_hours": _hours(extras["contested_wall"]),
            "pay": _money(extras["contested_amount"]),
        },
        "outvoted": {
            "labels": _int(extras["outvoted_labels"]),
            "active_hours": _hours(extras["outvoted_active"]),
            "wall_hours": _hours(extras["outvoted_wall"]),
            "pay": _money(extras["outvoted_amount"]),
        },
        "adjudication": {
            "available": bool(review["review_active_seconds"] or review["review_wall_seconds"]),
            "active_hours": _hours(review["review_active_seconds"]),
            "wall_hours": _hours(review["review_wall_seconds"]),
            "note": "No review time was on the books when this version was trained.",
        },
    }


def _stack(raw: pd.DataFrame, rows: pd.DataFrame, names: dict[int, str]) -> dict:
    """Active hours per version per annotator: the top annotators by hours, the rest as one."""
    versions = [int(v) for v in rows["version"]]
    id_to_seq = dict(zip(rows["version_id"], rows["version"], strict=True))
    frame = raw[raw["human_labels"] > 0][["version_id", "annotator_id", "active_seconds"]].copy()
    frame["hours"] = frame["active_seconds"].map(lambda s: float(s) / 3600)
    frame["version"] = frame["version_id"].map(id_to_seq)
    table = frame.pivot_table(index="annotator_id", columns="version", values="hours", aggfunc="sum", fill_value=0.0)
    table = table.reindex(columns=versions, fill_value=0.0)
    order = table.sum(axis=1).sort_values(ascending=False).index.tolist()
    top, rest = order[:STACK_TOP_ANNOTATORS], order[STACK_TOP_ANNOTATORS:]
    series = [{"annotator": names.get(int(a), "?"), "hours": [round(h, 4) for h in table.loc[a].tolist()]} for a in top]
    if rest:
        series.append(
            {
                "annotator": f"{len(rest)} others",
                "others": True,
                "hours": [round(h, 4) for h in table.loc[rest].sum(axis=0).tolist()],
            }
        )
    return {"versions": versions, "series": series}


def card_charts(card: dict) -> dict[str, str]:
    """The three SVG charts of a card (cached with it by the page view)."""
    wages = [float(a["effective_hourly_wage"]) for a in card["annotators"] if a["effective_hourly_wage"] is not None]
    floor = card["pay"]["floor_hourly_rate"]
    return {
        "learning_curve": charts.learning_curve(card["history"], current=card["scope"]["version"]),
        "hours_by_annotator": charts.hours_by_annotator(card["stack"]),
        "wage_distribution": charts.wage_distribution(
            wages, floor=float(floor) if floor is not None else None, currency=card["project"]["currency"]
        ),
    }
