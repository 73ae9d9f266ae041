"""Training benchmarks (make bench-training): results go to BENCHMARKS-training.md and
bench-results/training.json, the label-efficiency curve to docs/training_label_efficiency.svg.

    python bench/training_bench.py [throughput] [efficiency] [sorted] [freshness] [--quick] [--no-deep]

- throughput: MiniLM embedding sentences/s on CPU, fp32 and bf16 autocast (and GPU when present).
- efficiency: held-out accuracy against the number of labels on AG News (pool 6,000, fixed
  test set 1,600), margin/entropy (the product's queue order, QC share included) vs random,
  5 seeds; the frozen-MiniLM head and the from-scratch hashed model. Labels come from a
  simulated annotator who answers with the gold label. Embeddings are cached in var/bench/.
- sorted: label efficiency from a file sorted by label (AG News and SST-2, 2,000-text pools): the
  product's order (cold start, then margin + QC + diversity) against the queue before it (file
  order until a first model) and random order, 3 seeds; accuracy and macro-F1 at 32-512 labels,
  and the deep loop at 128 AG News labels. Written into its own section of the report.
- freshness: on the real stack (PostgreSQL, Redis, a Celery worker subprocess): from the
  submission of a label to a new current version whose scores reorder the queue, with 1,000
  labels and a 6,000-text pool whose embeddings are cached.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.training_embed_cache import ag_news_embeddings  # noqa: E402
from training.ml.data import AG_NEWS_CLASSES, datasets_dir, read_ag_news  # noqa: E402

RESULTS = ROOT / "bench-results" / "training.json"
REPORT = ROOT / "BENCHMARKS-training.md"
CURVE = ROOT / "docs" / "training_label_efficiency.svg"
POOL, TEST = 6000, 1600
SPLIT_SEED = 20240601  # the fixed pool/test split


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{os.cpu_count()}-core {platform.machine()} ({cpu}), {gpu}, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def ag_split():
    rows = read_ag_news()
    y = np.asarray([AG_NEWS_CLASSES.index(lab) for lab, _ in rows])
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(rows))
    return rows, y, perm[:POOL], perm[POOL : POOL + TEST]


# --- throughput -----------------------------------------------------------------------------


def bench_throughput(quick: bool) -> dict:
    import torch

    from training.ml.device import configure_threads
    from training.ml.encoder import load_encoder

    threads = configure_threads(2)
    rows, _, pool, _ = ag_split()
    texts = [rows[i][1] for i in pool[: 256 if quick else 512]]
    out = {"texts": len(texts), "threads": threads, "avg_chars": float(np.mean([len(t) for t in texts]))}
    encoder = load_encoder("cpu")
    encoder.embed(texts[:64])  # warm-up
    # bf16 autocast is measured on fewer texts: without AVX-512 BF16/AMX (this machine's AMD EPYC
    # has AVX2 only) torch emulates it and it is far slower than fp32.
    for name, bf16, sample in (("cpu_fp32", False, texts), ("cpu_bf16_autocast", True, texts[:128])):
        passes = []
        for _ in range(2):  # the cores are shared: report the better of two passes, and the load
            load = os.getloadavg()[0]
            started = time.perf_counter()
            vectors = encoder.embed(sample, batch_size=64, bf16=bf16)
            passes.append((len(sample) / (time.perf_counter() - started), load))
        best = max(passes)
        out[name] = {"sentences_per_s": best[0], "passes": passes, "load_avg_1m": best[1], "texts": len(sample)}
        if bf16:
            ref = encoder.embed(sample)
            out[name]["mean_cosine_to_fp32"] = float((ref * vectors).sum(1).mean())
        print(f"  {name}: {best[0]:.1f} sentences/s (passes: {passes})", flush=True)
    if torch.cuda.is_available():
        gpu = load_encoder("cuda")
        gpu.embed(texts[:64], bf16=True)
        torch.cuda.synchronize()
        started = time.perf_counter()
        gpu.embed(texts * 4, batch_size=256, bf16=True)
        torch.cuda.synchronize()
        out["gpu_bf16"] = {"sentences_per_s": 4 * len(texts) / (time.perf_counter() - started)}
    else:
        out["gpu_bf16"] = "not measured: no GPU lent"
    return out


# --- label efficiency -----------------------------------------------------------------------


def _fit_head(x, y, seed):
    from training.ml.classifiers import Dataset, HeadClassifier, HyperParams

    model = HeadClassifier(list(AG_NEWS_CLASSES), HyperParams(seed=seed))
    model.fit(Dataset(features=x, targets=np.eye(4, dtype=np.float32)[y]))
    return model


def active_curve(emb, y, pool, test, strategy, seed, checkpoints, start=8):
    """The product's loop: retrain, re-rank the pool by the queue order (uncertainty with a
    10% QC share of random picks; or random), label the next batch, repeat."""
    from training.ml.sampling import queue_priorities, uncertainty

    rng = np.random.default_rng(seed)
    labeled = list(rng.choice(pool, size=start, replace=False))
    unlabeled = np.setdiff1d(pool, labeled)
    curve = {}
    target = max(checkpoints)
    while True:
        n = len(labeled)
        if strategy == "random" and n not in checkpoints:  # the order does not depend on the model
            picks = rng.choice(unlabeled, size=min(c for c in checkpoints if c > n) - n, replace=False)
            labeled += list(picks)
            unlabeled = np.setdiff1d(unlabeled, picks)
            continue
        model = _fit_head(emb[labeled], y[labeled], seed)
        if n in checkpoints:
            curve[n] = float((model.predict_proba(emb[test]).argmax(1) == y[test]).mean())
        if n >= target:
            return curve
        nxt = min(c for c in checkpoints + [target] if c > n)
        batch = min(max(4, n // 8), nxt - n)
        if strategy == "random":
            picks = rng.choice(unlabeled, size=batch, replace=False)
        else:
            scores = uncertainty(model.predict_proba(emb[unlabeled]), strategy)
            prio = queue_priorities(scores, qc_share=0.1, rng=rng)
            picks = unlabeled[np.argsort(-prio)[:batch]]
        labeled += list(picks)
        unlabeled = np.setdiff1d(unlabeled, picks)


def hashed_curve(rows, y, pool, test, seed, checkpoints):
    from training.ml.classifiers import Dataset, HashedClassifier, HyperParams

    rng = np.random.default_rng(seed)
    order = rng.permutation(pool)
    model = HashedClassifier(list(AG_NEWS_CLASSES), HyperParams(seed=seed))
    feats = model.featurize([rows[i][1] for i in range(len(rows))])
    curve = {}
    for n in checkpoints:
        idx = order[:n]
        model.fit(Dataset(features=feats.take(idx), targets=np.eye(4, dtype=np.float32)[y[idx]]))
        curve[n] = float((model.predict_proba(feats.take(test)).argmax(1) == y[test]).mean())
    return curve


def bench_efficiency(quick: bool) -> dict:
    from training.ml.device import configure_threads

    configure_threads(2)
    rows, y, pool, test = ag_split()
    emb = ag_news_embeddings()
    checkpoints = [32, 64, 128, 256, 512, 1000] if not quick else [32, 128, 256]
    seeds = [0, 1, 2, 3, 4] if not quick else [0, 1]
    out = {"pool": POOL, "test": TEST, "seeds": seeds, "checkpoints": checkpoints, "curves": {}}
    for strategy in ("margin", "entropy", "random"):
        started = time.perf_counter()
        per_seed = [active_curve(emb, y, pool, test, strategy, s, checkpoints) for s in seeds]
        out["curves"][f"minilm_head_{strategy}"] = {
            str(n): {
                "mean": float(np.mean([c[n] for c in per_seed])),
                "std": float(np.std([c[n] for c in per_seed])),
                "runs": [c[n] for c in per_seed],
            }
            for n in checkpoints
        }
        print(
            f"  minilm head, {strategy}: "
            + ", ".join(f"{n}: {out['curves'][f'minilm_head_{strategy}'][str(n)]['mean']:.3f}" for n in checkpoints)
            + f"  ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    # the ceiling: a head on all 6,000 pool labels
    full = _fit_head(emb[pool], y[pool], 0)
    out["minilm_head_all_pool"] = float((full.predict_proba(emb[test]).argmax(1) == y[test]).mean())
    print(f"  minilm head, all {POOL}: {out['minilm_head_all_pool']:.3f}", flush=True)
    hashed_seeds = seeds[:3]
    started = time.perf_counter()
    per_seed = [hashed_curve(rows, y, pool, test, s, checkpoints + [POOL]) for s in hashed_seeds]
    out["curves"]["hashed_random"] = {
        str(n): {
            "mean": float(np.mean([c[n] for c in per_seed])),
            "std": float(np.std([c[n] for c in per_seed])),
            "runs": [c[n] for c in per_seed],
        }
        for n in checkpoints + [POOL]
    }
    print(
        f"  hashed, random ({len(hashed_seeds)} seeds): "
        + ", ".join(f"{n}: {out['curves']['hashed_random'][str(n)]['mean']:.3f}" for n in checkpoints + [POOL])
        + f"  ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    plot_curve(out)
    return out


def plot_curve(eff: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {
        "minilm_head_margin": ("MiniLM head, margin (+10% QC)", "tab:blue", "-"),
        "minilm_head_entropy": ("MiniLM head, entropy (+10% QC)", "tab:green", "-"),
        "minilm_head_random": ("MiniLM head, random", "tab:orange", "--"),
        "hashed_random": ("hashed (from scratch), random", "tab:gray", ":"),
    }
    for key, (label, color, ls) in styles.items():
        curve = eff["curves"].get(key)
        if not curve:
            continue
        ns = sorted(int(n) for n in curve)
        mean = np.array([curve[str(n)]["mean"] for n in ns])
        std = np.array([curve[str(n)]["std"] for n in ns])
        ax.plot(ns, mean, ls, color=color, marker="o", ms=3, label=label)
        ax.fill_between(ns, mean - std, mean + std, color=color, alpha=0.15)
    ax.axhline(eff["minilm_head_all_pool"], color="black", lw=0.8, label=f"MiniLM head, all {POOL} labels")
    ax.axhline(0.85, color="red", lw=0.8, ls="--", label="target 0.85 at 256")
    ax.set_xscale("log")
    ax.set_xlabel("labels (simulated annotator answering with the gold label)")
    ax.set_ylabel(f"accuracy on the fixed AG News test set ({TEST})")
    ax.set_title(f"Label efficiency on AG News (pool {POOL}, {len(eff['seeds'])} seeds, mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    CURVE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(CURVE, format=CURVE.suffix[1:], **({"metadata": {"Date": None}} if CURVE.suffix == ".svg" else {}))
    plt.close(fig)


# --- label efficiency from a file sorted by label -----------------------------------------------

SORTED_POOL = 2000
SORTED_CHECKPOINTS = [32, 64, 128, 256, 512]
SORTED_SEEDS = [0, 1, 2]
SST2_CLASSES = ("negative", "positive")


def _sorted_dataset(name: str):
    """(pool texts, pool labels, test texts, test labels, classes): a 2,000-text pool sorted by
    label (as a file exported grouped by class) and a fixed test set. AG News: pool from the
    test split's 6,000-text pool, test = the fixed 1,600; SST-2: pool from the train split, test =
    the dev split (872)."""
    from training.ml.data import read_sst2

    if name == "ag_news":
        rows, y, pool, test = ag_split()
        pool = pool[:SORTED_POOL]
        texts, labels = [rows[i][1] for i in pool], y[pool]
        test_texts, test_y, classes = [rows[i][1] for i in test], y[test], AG_NEWS_CLASSES
    else:
        train = read_sst2()
        dev = read_sst2(datasets_dir() / "sst2_dev.tsv")
        pick = np.random.default_rng(SPLIT_SEED).permutation(len(train))[:SORTED_POOL]
        texts = [train[i][1] for i in pick]
        labels = np.asarray([SST2_CLASSES.index(train[i][0]) for i in pick])
        test_texts, classes = [t for _, t in dev], SST2_CLASSES
        test_y = np.asarray([SST2_CLASSES.index(c) for c, _ in dev])
    order = np.argsort(labels, kind="stable")  # the file, sorted by label
    return [texts[i] for i in order], labels[order], test_texts, test_y, tuple(classes)


def _embed_cached(name: str, texts: list[str]) -> np.ndarray:
    """MiniLM embeddings of these texts, cached in var/bench/ (keyed by their hash)."""
    import hashlib

    from training.ml.encoder import ENCODER_KEY, load_encoder

    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    path = ROOT / "var" / "bench" / f"{name}_{ENCODER_KEY.replace('@', '_')}_{digest}.npy"
    if path.exists():
        return np.load(path)
    started = time.perf_counter()
    emb = load_encoder("cpu").embed(texts, batch_size=64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, emb)
    print(f"  embedded {len(texts)} {name} texts in {time.perf_counter() - started:.0f} s", flush=True)
    return emb


def _macro_f1(pred: np.ndarray, y: np.ndarray, k: int) -> float:
    f1 = []
    for c in range(k):
        tp = float(((pred == c) & (y == c)).sum())
        denom = float((pred == c).sum() + (y == c).sum())
        f1.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


def _fit_head_k(x, y, classes, seed):
    from training.ml.classifiers import Dataset, HeadClassifier, HyperParams

    model = HeadClassifier(list(classes), HyperParams(seed=seed))
    model.fit(Dataset(features=x, targets=np.eye(len(classes), dtype=np.float32)[y]))
    return model


def sorted_curve(emb, y, test_emb, test_y, classes, order: str, seed: int, checkpoints, min_labels: int = 4):
    """Label a class-sorted pool with the gold answers, in one order, and score the fast loop
    (frozen MiniLM + head, retrained after every batch) at each checkpoint.

    - product: the queue's own order, with the worker's functions: before the first model the
      cold start (training.ml.sampling.cold_start_order on the pool's embeddings, cluster_count
      clusters); then after every batch (max(4, n/8) labels) a retrained head re-ranks the pool
      with queue_order (margin, 10% QC share, the diversity share and near-duplicate skipping).
    - before: the queue before this change: file order until a first model can train (min_labels
      over two classes), then the same uncertainty loop, without diversity.
    - random: labels in random order (the baseline).
    Before a first model exists, a checkpoint scores as the majority answer of the labels so far.
    """
    from training.ml.sampling import (
        DIVERSITY_SHARE,
        cluster_count,
        cold_start_order,
        normalize_rows,
        queue_order,
        uncertainty,
    )

    rng = np.random.default_rng(seed)
    k, n_pool = len(classes), len(y)
    unit = normalize_rows(emb)
    if order == "random":
        sequence = list(rng.permutation(n_pool))
    elif order == "product":
        cold, _ = cold_start_order(unit, cluster_count(k, n_pool), rng)
        sequence = list(cold)
    else:
        sequence = list(range(n_pool))
    labeled: list[int] = []
    curve, first_model_at, model = {}, None, None
    target = max(checkpoints)
    while len(labeled) < target:
        n = len(labeled)
        can_train = n >= min_labels and len(set(y[labeled])) >= 2
        if order != "random" and can_train:
            model = _fit_head_k(emb[labeled], y[labeled], classes, seed)
            first_model_at = first_model_at or n
        nxt = min([c for c in checkpoints if c > n] + [target])
        batch = min(max(4, n // 8), nxt - n)
        if order == "random" or model is None:  # no model yet (or random): the order given
            taken = set(labeled)
            picks = [i for i in sequence if i not in taken][:batch]
        else:
            rest = np.setdiff1d(np.arange(n_pool), labeled)
            scores = uncertainty(model.predict_proba(emb[rest]), "margin")
            diverse = order == "product"
            prio, _ = queue_order(
                scores,
                qc_share=0.1,
                rng=rng,
                vectors=(lambda idx, rest=rest: unit[rest[idx]]) if diverse else None,
                diversity_share=DIVERSITY_SHARE if diverse else 0.0,
            )
            picks = list(rest[np.argsort(-prio, kind="stable")[:batch]])
        labeled += picks
        if len(labeled) in checkpoints:
            n = len(labeled)
            if len(set(y[labeled])) >= 2:
                final = _fit_head_k(emb[labeled], y[labeled], classes, seed)
                pred = final.predict_proba(test_emb).argmax(1)
            else:  # no model can train on one class: the majority answer
                pred = np.full(len(test_y), y[labeled][0])
            curve[n] = {
                "accuracy": float((pred == test_y).mean()),
                "macro_f1": _macro_f1(pred, test_y, k),
                "classes_labeled": int(len(set(y[labeled]))),
            }
    per_class = 8 * k  # the target: every class once 8 labels per class exist
    return {
        "curve": curve,
        "first_model_at": first_model_at,
        "classes_in_first_8_per_class": int(len(set(y[sequence[:per_class]]))) if order == "product" else None,
        "classes_at_first_model": int(len(set(y[labeled[: first_model_at or 0]]))) if first_model_at else None,
        "labeled": [int(i) for i in labeled],
    }


def deep_point(texts, y, test_texts, test_y, classes, labeled, seed, *, device="cpu", epochs=0):
    """The deep loop at one checkpoint: MiniLM fine-tuned with its head on the given labels
    (chosen by the fast loop's product order), scored on the test set. `epochs`: 0 for the
    deep loop's default."""
    from training.ml.classifiers import Dataset, HyperParams
    from training.ml.finetune import FineTunedClassifier

    started = time.perf_counter()
    model = FineTunedClassifier(list(classes), HyperParams(seed=seed, epochs=epochs))
    model.fit(
        Dataset(texts=[texts[i] for i in labeled], targets=np.eye(len(classes), dtype=np.float32)[y[labeled]]),
        None,
        device=device,
    )
    pred = model.predict_proba(model.featurize(test_texts)).argmax(1)
    return {
        "accuracy": float((pred == test_y).mean()),
        "macro_f1": _macro_f1(pred, test_y, len(classes)),
        "seconds": time.perf_counter() - started,
    }


def bench_sorted(quick: bool, deep: bool = True, deep_seeds: int = 0) -> dict:
    """Label efficiency from a file sorted by label (issue 12, item 8). `deep_seeds`: how many
    of the seeds get a deep point (0: all)."""
    from training.ml.device import configure_threads

    configure_threads(2)
    checkpoints = SORTED_CHECKPOINTS if not quick else [32, 64, 128]
    seeds = SORTED_SEEDS if not quick else [0]
    out = {
        "pool": SORTED_POOL,
        "seeds": seeds,
        "checkpoints": checkpoints,
        "datasets": {},
        "load_start": os.getloadavg()[0],
    }
    for name in ("ag_news", "sst2"):
        texts, y, test_texts, test_y, classes = _sorted_dataset(name)
        emb = _embed_cached(f"sorted_{name}_pool", texts)
        test_emb = _embed_cached(f"sorted_{name}_test", test_texts)
        ds = {"classes": list(classes), "test": len(test_y), "orders": {}}
        for order in ("product", "before", "random"):
            started = time.perf_counter()
            runs = [sorted_curve(emb, y, test_emb, test_y, classes, order, s, checkpoints) for s in seeds]
            ds["orders"][order] = {
                "curve": {
                    str(n): {
                        m: {
                            "mean": float(np.mean([r["curve"][n][m] for r in runs])),
                            "std": float(np.std([r["curve"][n][m] for r in runs])),
                        }
                        for m in ("accuracy", "macro_f1")
                    }
                    | {"min_classes": min(r["curve"][n]["classes_labeled"] for r in runs)}
                    for n in checkpoints
                },
                "first_model_at": [r["first_model_at"] for r in runs],
                "classes_in_first_8_per_class": [r["classes_in_first_8_per_class"] for r in runs],
                "seconds": time.perf_counter() - started,
            }
            if order == "product":
                ds["product_labeled"] = [r["labeled"] for r in runs]
            print(
                f"  {name} {order}: "
                + ", ".join(
                    f"{n}: {ds['orders'][order]['curve'][str(n)]['accuracy']['mean']:.3f}/"
                    f"{ds['orders'][order]['curve'][str(n)]['macro_f1']['mean']:.3f}"
                    for n in checkpoints
                )
                + f"  ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        if deep and name == "ag_news":
            budget = 128
            points = []
            for s, labeled in list(zip(seeds, ds["product_labeled"], strict=True))[: deep_seeds or None]:
                points.append(deep_point(texts, y, test_texts, test_y, classes, labeled[:budget], s))
                print(f"  {name} deep at {budget}, seed {s}: {points[-1]}", flush=True)
            ds["deep"] = {"labels": budget, "points": points}
        ds.pop("product_labeled", None)
        out["datasets"][name] = ds
    out["load_end"] = os.getloadavg()[0]
    return out


def _sorted_section(so: dict, machine_line: str) -> list[str]:
    lines = [
        "<!-- sorted-file:start -->",
        "## Label efficiency from a file sorted by label (issue 12, item 8)",
        "",
        f"Machine: {machine_line}; 1-minute load average {so.get('load_start', float('nan')):.1f} when the run "
        f"started, {so.get('load_end', float('nan')):.1f} when it ended (the cores are shared: timings are "
        "pessimistic, accuracies exact). `python bench/training_bench.py sorted` (part of `make bench-training`).",
        "",
        f"A pool of {so['pool']:,} texts per data set, **sorted by label** (a file exported grouped by class; "
        "AG News: 2,000 of the test split's 6,000-text bench pool, test = the fixed 1,600; SST-2: 2,000 of the "
        "train split, test = the dev split, 872), labeled with the gold answers, "
        f"{len(so['seeds'])} seeds (mean ± std). Fast loop: the frozen MiniLM with the head the worker trains, "
        "retrained after every batch of max(4, n/8) labels. Orders:",
        "",
        "- **product**: the queue's order with the worker's own functions: the cold start "
        "(`cold_start_order` on the pool's embeddings, 3 clusters per label) until a first model, then "
        "margin sampling with the 10% QC share, the diversity share and near-duplicate skipping "
        "(`queue_order`);",
        "- **before**: the queue before this change: file order until a model can train (4 labels over "
        "two classes), then margin with QC;",
        "- **random**: labels in random order.",
        "",
        "Until two classes are labeled no model can train; such a checkpoint scores as always answering "
        "the one class seen.",
        "",
    ]
    for name, ds in so["datasets"].items():
        title = {"ag_news": "AG News (4 classes)", "sst2": "SST-2 (2 classes)"}[name]
        orders = ds["orders"]
        lines += [
            f"### {title}",
            "",
            "| labels | " + " | ".join(f"{o} accuracy | {o} macro-F1" for o in orders) + " |",
            "| --- |" + " --- | --- |" * len(orders),
        ]
        for n in so["checkpoints"]:
            cells = []
            for o in orders.values():
                c = o["curve"][str(n)]
                cells.append(
                    f"{c['accuracy']['mean']:.3f} ± {c['accuracy']['std']:.3f} | "
                    f"{c['macro_f1']['mean']:.3f} ± {c['macro_f1']['std']:.3f}"
                )
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        p, b = orders["product"], orders["before"]
        lines += [
            "",
            f"Classes among the first {8 * len(ds['classes'])} labels (8 per class) in the product's order, per "
            f"seed: {p['classes_in_first_8_per_class']} of {len(ds['classes'])}; the first model could train at "
            f"{p['first_model_at']} labels. Before this change the first model could train only at "
            + ", ".join(str(a) if a else f"never within {max(so['checkpoints'])}" for a in b["first_model_at"])
            + " labels (the file's first class had to run out first).",
            "",
        ]
        if ds.get("deep"):
            pts = ds["deep"]["points"]
            acc = [q["accuracy"] for q in pts]
            f1 = [q["macro_f1"] for q in pts]
            lines += [
                f"Deep loop (MiniLM fine-tuned with its head, `FineTunedClassifier` with its defaults, on the "
                f"{ds['deep']['labels']} labels the product's order chose), one point per seed for "
                f"{len(pts)} of the {len(so['seeds'])} seeds: accuracy {np.mean(acc):.3f} ± {np.std(acc):.3f}, "
                f"macro-F1 {np.mean(f1):.3f} ± {np.std(f1):.3f} (per seed: "
                + ", ".join(f"{q['accuracy']:.3f}" for q in pts)
                + f"; {np.mean([q['seconds'] for q in pts]):.0f} s each on this CPU, the 1,600 test texts' "
                "embedding with the fine-tuned encoder included). A whole deep curve "
                "(a fine-tune after every batch) does not fit this 2-core machine's time: not measured.",
                "",
            ]
    if not any(ds.get("deep") for ds in so["datasets"].values()):
        lines += [
            "Deep loop (MiniLM fine-tuned with its head): not measured in this run (`--no-deep`). On this "
            "shared 2-core CPU one fine-tune at 128 labels plus re-embedding the 1,600 test texts takes "
            "minutes (the embedding alone ran at about 8 texts/s under the machine's load), so a deep curve "
            "over 3 seeds does not fit the bench's 20-minute budget; `python bench/training_bench.py sorted` "
            "without `--no-deep` measures one deep point per seed at 128 AG News labels.",
            "",
        ]
    return [*lines, "<!-- sorted-file:end -->", ""]


def write_sorted_section(results: dict) -> None:
    """Put the sorted-file section into BENCHMARKS-training.md in place (the other sections
    stay as their last run wrote them)."""
    section = "\n".join(_sorted_section(results["sorted"], results["machine"]))
    text = REPORT.read_text() if REPORT.exists() else "# Training benchmarks\n\n"
    start, end = "<!-- sorted-file:start -->", "<!-- sorted-file:end -->\n"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    REPORT.write_text(text)


# --- freshness on the real stack --------------------------------------------------------------


def _django(db_url: str, store: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    os.environ["DATABASE_URL"] = db_url
    os.environ["TALLY_MODEL_STORE"] = store
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/2")
    os.environ.setdefault("CACHE_KEY_PREFIX", "bench-training")
    import django

    django.setup()


def _fresh_database(db_url: str) -> None:
    import psycopg

    name = db_url.rsplit("/", 1)[1]
    admin_url = db_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _start_worker(log_path: Path) -> subprocess.Popen:
    from config.celery_app import app

    app.control.purge()
    log = open(log_path, "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            "training,default,embedding",
            "-P",
            "solo",
            "-c",
            "1",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "WARNING",
            "-n",
            f"bench-training-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early: {log_path.read_text()[-2000:]}")
        if app.control.inspect(timeout=1).ping():
            return proc
    proc.kill()
    raise RuntimeError("worker did not answer")


def _wait(predicate, timeout=120.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("timed out")


def _setup_ag(quick: bool) -> dict:
    """AG News: the 6,000-text pool with its real MiniLM embeddings cached, labels given through
    annotation.services by the simulated annotator (training switched off meanwhile)."""
    from annotation.models import Example
    from annotation.services import text_hash
    from training import runs
    from training.ml.encoder import ENCODER_KEY

    rows, y, pool, _ = ag_split()
    emb = ag_news_embeddings()
    ctx = _make_project("AG News bench", AG_NEWS_CLASSES)
    examples = Example.objects.bulk_create(
        (Example(project=ctx["project"], text=rows[i][1], text_hash=text_hash(rows[i][1])) for i in pool),
        batch_size=2000,
    )
    ctx["truth"] = {ex.pk: AG_NEWS_CLASSES[y[i]] for ex, i in zip(examples, pool, strict=True)}
    runs.embeddings_store(
        project_id=ctx["project"].pk, encoder_key=ENCODER_KEY, example_ids=[e.pk for e in examples], vectors=emb[pool]
    )
    n_labels = 300 if quick else 1000
    print(f"  labeling {n_labels} examples through annotation.services (training off)...", flush=True)
    started = time.perf_counter()
    for _ in range(n_labels):
        ctx["submit_one"]()
    ctx.update(
        pool=len(examples),
        labels_before=n_labels,
        setup_labeling_s=time.perf_counter() - started,
        embeddings="real MiniLM embeddings, cached",
    )
    return ctx


def _setup_sst2_large(quick: bool) -> dict:
    """SST-2 train + dev (68,221 texts) as the pool, 10,000 labels. The labels are bulk-created as
    finished attempts + annotations (setup, not the measured path), and the cached embeddings are
    synthetic unit vectors: embedding 68,000 texts would take about 16 minutes of this shared
    CPU, and a fast run's timing does not depend on the vectors' values."""
    from datetime import timedelta

    from django.db.models import F
    from django.utils import timezone

    from annotation.models import Annotation, Attempt, Example, Label
    from annotation.services import text_hash
    from training import runs
    from training.ml.data import read_sst2
    from training.ml.encoder import ENCODER_KEY

    rows = read_sst2() + read_sst2(datasets_dir() / "sst2_dev.tsv")
    seen, unique = set(), []
    for label, text in rows:
        h = text_hash(text)
        if text.strip() and h not in seen:
            seen.add(h)
            unique.append((label, text, h))
    ctx = _make_project("SST-2 bench", ("negative", "positive"))
    project = ctx["project"]
    started = time.perf_counter()
    examples = Example.objects.bulk_create(
        (Example(project=project, text=t, text_hash=h) for _, t, h in unique), batch_size=5000
    )
    ctx["truth"] = {ex.pk: lab for ex, (lab, _, _) in zip(examples, unique, strict=True)}
    rng = np.random.default_rng(0)
    direction = rng.normal(size=384).astype(np.float32)
    ids = np.asarray([e.pk for e in examples])
    signs = np.asarray([1.0 if lab == "positive" else -1.0 for lab, _, _ in unique], dtype=np.float32)
    for start in range(0, len(ids), 10_000):
        sl = slice(start, start + 10_000)
        v = rng.normal(size=(len(ids[sl]), 384)).astype(np.float32) + 0.3 * signs[sl, None] * direction
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        runs.embeddings_store(project_id=project.pk, encoder_key=ENCODER_KEY, example_ids=ids[sl], vectors=v)
    n_labels = 2000 if quick else 10_000
    chosen = rng.choice(len(examples), size=n_labels, replace=False)
    now = timezone.now() - timedelta(hours=1)
    annotator = ctx["annotator"]
    attempts = Attempt.objects.bulk_create(
        (
            Attempt(
                project=project,
                example=examples[i],
                annotator=annotator,
                status=Attempt.Status.SUBMITTED,
                claimed_at=now,
                lease_expires_at=now,
                last_active_at=now,
                finished_at=now,
                wall_seconds=5,
                active_seconds=5,
            )
            for i in chosen
        ),
        batch_size=5000,
    )
    annotations = Annotation.objects.bulk_create(
        (
            Annotation(project=project, example=a.example, annotator=annotator, attempt=a, created_at=now)
            for a in attempts
        ),
        batch_size=5000,
    )
    label_ids = dict(Label.objects.filter(project=project).values_list("name", "id"))
    Through = Annotation.labels.through
    Through.objects.bulk_create(
        (Through(annotation_id=a.pk, label_id=label_ids[ctx["truth"][a.example_id]]) for a in annotations),
        batch_size=5000,
    )
    Example.objects.filter(pk__in=[examples[i].pk for i in chosen]).update(submitted_count=F("submitted_count") + 1)
    ctx.update(
        pool=len(examples),
        labels_before=n_labels,
        setup_labeling_s=time.perf_counter() - started,
        embeddings="synthetic unit vectors, cached",
    )
    return ctx


def _make_project(name: str, label_names) -> dict:
    from django.utils import timezone

    from annotation import services as annotation_services
    from annotation.models import Label
    from tests.factories import UserFactory, add_member, make_project
    from training import services

    admin = UserFactory(username=f"bench-admin-{name[:5].lower()}")
    project = make_project(admin=admin, name=name, labels=label_names)
    annotator = add_member(project, "annotator", UserFactory(username=f"bench-annotator-{name[:5].lower()}"))
    services.config_update(project=project, model_kind="minilm", enabled=False, holdout_share=0.2)
    labels = dict(Label.objects.filter(project=project).values_list("name", "id"))
    ctx = {"project": project, "admin": admin, "annotator": annotator}

    def submit_one():
        attempt = annotation_services.claim_next(project=project, annotator=annotator)
        started = timezone.now()
        t0 = time.perf_counter()
        annotation = annotation_services.annotation_submit(
            attempt_id=attempt.pk, annotator=annotator, label_ids=[labels[ctx["truth"][attempt.example_id]]]
        )
        return annotation, started, time.perf_counter() - t0

    ctx["submit_one"] = submit_one
    return ctx


def bench_freshness(quick: bool, large: bool = False) -> dict:
    import tempfile

    db_url = os.environ.get("TALLY_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tally_bench_training")
    if "django" in sys.modules and os.environ.get("DJANGO_SETTINGS_MODULE"):
        from django.db import connections

        connections.close_all()  # a previous part's connection to the database dropped below
    _fresh_database(db_url)
    _django(db_url, tempfile.mkdtemp(prefix="tally-bench-models-"))
    from django.core.management import call_command
    from django.utils import timezone

    from annotation.models import Annotation
    from training import selectors, services
    from training.models import ManifestEntry, ModelVersion, TrainingRun

    call_command("migrate", verbosity=0)
    ctx = _setup_sst2_large(quick) if large else _setup_ag(quick)
    project, admin, submit_one = ctx["project"], ctx["admin"], ctx["submit_one"]
    services.config_update(project=project, enabled=True)

    log_path = ROOT / "bench-results" / "training-worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    worker = _start_worker(log_path)
    try:
        # warm-up: the worker loads torch and reads the pool's cached embeddings once
        run = services.training_run_request(project=project, requested_by=admin)
        t = time.perf_counter()
        _wait(lambda: TrainingRun.objects.get(pk=run.pk).status in ("succeeded", "failed"), timeout=600)
        run.refresh_from_db()
        assert run.status == "succeeded", run.error
        warmup_s = time.perf_counter() - t
        holdout = services.config_get(project_id=project.pk).holdout_share

        def reflected(annotation):
            """The first run that read this label and made its version current with scores written."""
            in_eval = selectors.in_holdout(annotation.example.text_hash, holdout)
            for v in (
                ModelVersion.objects.filter(project=project, snapshot_at__gte=annotation.created_at)
                .order_by("run_id")
                .select_related("run")
            ):
                seen = (
                    ManifestEntry.objects.filter(version=v, annotation=annotation).exists()
                    if not in_eval
                    else v.snapshot_at > annotation.created_at
                )
                if seen and v.run.progress.get("queue_updated_at"):
                    return v
            return None

        samples, stages = [], []
        n_samples = 10 if quick else (20 if large else 30)
        print(f"  measuring {n_samples} labels, one at a time...", flush=True)
        for _ in range(n_samples):
            annotation, submitted_at, submit_s = submit_one()
            annotation = Annotation.objects.select_related("example").get(pk=annotation.pk)
            version = _wait(lambda a=annotation: reflected(a), timeout=120)
            done = timezone.datetime.fromisoformat(version.run.progress["queue_updated_at"])
            samples.append((done - submitted_at).total_seconds())
            r = version.run
            stages.append(
                {
                    "submit_s": submit_s,
                    "queue_wait_s": (r.started_at - r.first_event_at).total_seconds(),
                    "embedding_s": version.embedding_seconds,
                    "training_s": version.training_seconds,
                    "scoring_s": version.scoring_seconds,
                    "run_s": (r.finished_at - r.started_at).total_seconds(),
                    "head_s": r.progress.get("queue_head_seconds", 0.0),
                    "write_s": r.progress.get("write_seconds", 0.0),
                }
            )
            time.sleep(0.2)
        # paced: labels keep arriving every 0.5 s (runs overlap with labeling, debounce at work)
        paced = []
        n_paced = 10 if quick else (20 if large else 30)
        print(f"  measuring {n_paced} labels arriving every 0.5 s...", flush=True)
        pending = []
        for _ in range(n_paced):
            annotation, submitted_at, _ = submit_one()
            pending.append((annotation.pk, submitted_at))
            time.sleep(0.5)
        for pk, submitted_at in pending:
            annotation = Annotation.objects.select_related("example").get(pk=pk)
            version = _wait(lambda a=annotation: reflected(a), timeout=120)
            done = timezone.datetime.fromisoformat(version.run.progress["queue_updated_at"])
            paced.append((done - submitted_at).total_seconds())
        runs = TrainingRun.objects.filter(project=project)
        current = selectors.current_version(project=project)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()

    def pct(values, q):
        return float(np.percentile(values, q))

    out = {
        "pool": ctx["pool"],
        "labels_before": ctx["labels_before"],
        "embeddings": ctx["embeddings"],
        "samples": samples,
        "paced_samples": paced,
        "p50_s": pct(samples, 50),
        "p95_s": pct(samples, 95),
        "max_s": max(samples),
        "paced_p50_s": pct(paced, 50),
        "paced_p95_s": pct(paced, 95),
        "stage_medians_s": {k: float(np.median([s[k] for s in stages])) for k in stages[0]},
        "warmup_run_s": warmup_s,
        "setup_labeling_s": ctx["setup_labeling_s"],
        "runs": runs.count(),
        "failed_runs": runs.filter(status="failed").count(),
        "current_version": current.sequence,
        "current_accuracy": current.metrics.get("accuracy"),
        "current_eval_size": current.metrics.get("eval_size"),
        "load_avg_1m_end": os.getloadavg()[0],
    }
    print(
        f"  freshness p50 {out['p50_s']:.2f} s, p95 {out['p95_s']:.2f} s; paced p95 {out['paced_p95_s']:.2f} s",
        flush=True,
    )
    return out


# --- report ---------------------------------------------------------------------------------


def _freshness_section(fr: dict, title: str) -> list[str]:
    st = fr["stage_medians_s"]
    return [
        f"## Freshness, {title} (real stack: PostgreSQL, Redis, one Celery worker)",
        "",
        f"From the submission of a label to a new current version whose scores reorder the queue (the "
        "1,000 best queue positions written: they outrank every position an older version wrote; the rest "
        f"of the pool and the predictions admins see follow), with {fr['labels_before']:,} labels already given "
        f"and a {fr['pool']:,}-text pool whose embeddings are cached ({fr.get('embeddings', 'real MiniLM')}). "
        "Frozen-encoder head, margin sampling with 10% QC picks, 20% holdout evaluated every run. A label is "
        "submitted through annotation.services exactly as the API does (claim, then submit).",
        "",
        "| measure | p50 | p95 | max |",
        "| --- | --- | --- | --- |",
        f"| one label at a time ({len(fr['samples'])} labels) | {fr['p50_s']:.2f} s | {fr['p95_s']:.2f} s | "
        f"{fr['max_s']:.2f} s |",
        f"| a label every 0.5 s ({len(fr['paced_samples'])} labels; runs overlap, debounced) | "
        f"{fr['paced_p50_s']:.2f} s | {fr['paced_p95_s']:.2f} s | {max(fr['paced_samples']):.2f} s |",
        "",
        f"Median stages: submit {st['submit_s'] * 1000:.0f} ms, waiting in the queue "
        f"{st['queue_wait_s'] * 1000:.0f} ms, training {st['training_s'] * 1000:.0f} ms, evaluation + scoring "
        f"{st['scoring_s'] * 1000:.0f} ms, claim to registration {st['run_s'] * 1000:.0f} ms, then the queue's "
        f"head {st.get('head_s', 0) * 1000:.0f} ms (all writes of the run, the whole pool's positions and the "
        f"predictions included when due: {st['write_s'] * 1000:.0f} ms). {fr['runs']} runs, {fr['failed_runs']} "
        f"failed. Held-out accuracy of the last version: {fr['current_accuracy']:.3f} on {fr['current_eval_size']} "
        "held-out labels"
        + (
            " (meaningless here: synthetic vectors)"
            if "synthetic" in fr.get("embeddings", "")
            else " (actively chosen examples are harder than a random test set)"
        )
        + f". The worker's first run (loading torch and the cached embeddings) took {fr['warmup_run_s']:.1f} s. "
        f"1-minute load average when the run ended: {fr.get('load_avg_1m_end', float('nan')):.1f} on 2 cores.",
        "",
    ]


def write_report(results: dict) -> None:
    lines = [
        "# Training benchmarks",
        "",
        f"Machine: {results['machine']}. Measured {results['date']} with `make bench-training`",
        "(`python bench/training_bench.py`); raw numbers in `bench-results/training.json`.",
        "The machine's two cores were shared with other work while measuring; figures are what",
        "a shared 2-core CPU gives, not a quiet one.",
        "",
    ]
    th = results.get("throughput")
    if th:
        lines += [
            "## Embedding throughput (all-MiniLM-L6-v2, mean pooling)",
            "",
            f"{th['texts']} AG News texts (title + description, {th['avg_chars']:.0f} characters on average), "
            f"batches of 64 sorted by length, {th['threads']} torch threads. This CPU (AMD EPYC, AVX2, no "
            "AVX-512 BF16/AMX) has no native bf16: autocast to bf16 is emulated and slower than fp32 here; "
            "the reference probe's 112/s came from a CPU with native bf16.",
            "",
            "| device | sentences/s |",
            "| --- | --- |",
            f"| CPU fp32 ({th['cpu_fp32']['texts']} texts) | {th['cpu_fp32']['sentences_per_s']:.1f} "
            f"(1-minute load average {th['cpu_fp32']['load_avg_1m']:.1f} on 2 cores) |",
            f"| CPU bf16 autocast ({th['cpu_bf16_autocast']['texts']} texts) | "
            f"{th['cpu_bf16_autocast']['sentences_per_s']:.1f} "
            f"(load {th['cpu_bf16_autocast']['load_avg_1m']:.1f}; mean cosine to fp32: "
            f"{th['cpu_bf16_autocast']['mean_cosine_to_fp32']:.4f}) |",
            "| GPU bf16 | "
            + (f"{th['gpu_bf16']['sentences_per_s']:.0f}" if isinstance(th["gpu_bf16"], dict) else th["gpu_bf16"])
            + " |",
            "",
        ]
    eff = results.get("efficiency")
    if eff:
        lines += [
            "## Label efficiency (AG News)",
            "",
            f"Pool {eff['pool']}, fixed test set {eff['test']} (split seed {SPLIT_SEED}), simulated annotator "
            f"answering with the gold label, {len(eff['seeds'])} seeds (mean ± std). Active runs start from 8 "
            "random labels and retrain after every batch (batch = max(4, n/8)), ordering the pool exactly "
            "as the product's queue does: uncertainty with 10% of positions given to random QC picks. "
            "The hashed model is the from-scratch baseline (random order, 3 seeds).",
            "",
            "![label efficiency](docs/training_label_efficiency.svg)",
            "",
            "| labels | " + " | ".join(k.replace("_", " ") for k in eff["curves"]) + " |",
            "| --- |" + " --- |" * len(eff["curves"]),
        ]
        ns = sorted({int(n) for c in eff["curves"].values() for n in c})
        for n in ns:
            cells = []
            for c in eff["curves"].values():
                v = c.get(str(n))
                cells.append(f"{v['mean']:.3f} ± {v['std']:.3f}" if v else "")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        at256 = eff["curves"]["minilm_head_margin"].get("256", {}).get("mean")
        lines += [
            "",
            f"Frozen MiniLM head with all {eff['pool']} pool labels: {eff['minilm_head_all_pool']:.3f}.",
            f"Target: at least 0.85 at 256 labels for the frozen-encoder head: margin sampling gives {at256:.3f}."
            if at256 is not None
            else "",
            "",
            "Deep loop (fine-tuning MiniLM): implemented (`training/ml/finetune.py`) and tested on a tiny CPU run; "
            "the 500-label accuracy target (0.90) on a GPU: not measured: no GPU lent.",
            "",
        ]
    for key, title in (
        ("freshness", "1,000 labels, 6,000-text pool (AG News)"),
        (
            "freshness_large",
            "10,000 labels, SST-2 pool (67,850 unique texts: the largest real pool at hand, "
            "short of the issue's 100,000)",
        ),
    ):
        fr = results.get(key)
        if fr:
            lines += _freshness_section(fr, title)
            runs = results.get("history", {}).get(key, [])
            if len(runs) > 1:
                lines += [
                    "Every recorded run of this measure (other processes share the two cores; the load is the "
                    "1-minute load average when the run ended):",
                    "",
                    "| run | p50 | p95 | max | paced p50 | paced p95 | load |",
                    "| --- | --- | --- | --- | --- | --- | --- |",
                    *(
                        f"| {h['date']} | {h['p50_s']:.2f} s | {h['p95_s']:.2f} s | {h['max_s']:.2f} s | "
                        f"{h['paced_p50_s']:.2f} s | {h['paced_p95_s']:.2f} s | {h['load_avg_1m_end']:.1f} |"
                        for h in runs
                    ),
                    "",
                ]
    if not results.get("freshness_large"):
        lines += [
            "10,000 labels / 100,000-text pool: not measured in this run "
            "(`python bench/training_bench.py freshness_large`).",
            "",
        ]
    REPORT.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", default=["throughput", "efficiency", "sorted", "freshness"])
    parser.add_argument("--no-deep", action="store_true", help="sorted: skip the deep loop's points")
    parser.add_argument(
        "--deep-seeds", type=int, default=0, help="sorted: a deep point for the first N seeds only (0: every seed)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer seeds and samples (a smoke run)")
    args = parser.parse_args()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["machine"] = machine()
    results["date"] = time.strftime("%Y-%m-%d")
    for part in args.parts:
        print(f"{part}:", flush=True)
        results[part] = {
            "throughput": bench_throughput,
            "efficiency": bench_efficiency,
            "sorted": lambda quick: bench_sorted(quick, deep=not args.no_deep, deep_seeds=args.deep_seeds),
            "freshness": bench_freshness,
            "freshness_large": lambda quick: bench_freshness(quick, large=True),
        }[part](args.quick)
        if part.startswith("freshness"):  # the cores are shared: keep every run's summary, with its load
            r = results[part]
            results.setdefault("history", {}).setdefault(part, []).append(
                {k: r[k] for k in ("p50_s", "p95_s", "max_s", "paced_p50_s", "paced_p95_s", "load_avg_1m_end")}
                | {"date": time.strftime("%Y-%m-%d %H:%M")}
            )
        RESULTS.write_text(json.dumps(results, indent=2, default=str))
    if set(args.parts) - {"sorted"}:
        write_report(results)
    if results.get("sorted"):
        write_sorted_section(results)
    print(f"wrote {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
