"""Embedding throughput (make bench-embedding; issue 12, item 3): the worker's encoder
(training.ml.encoder.Encoder.embed: token-length buckets, each batch padded to its longest
text, bf16 autocast where training.ml.device.use_bf16 says so) against a plain torch loop
over the same texts, in the same run, same batch size and threads:

    plain loop = for each batch of 64 in input order: tokenize (padding to the batch's longest,
    truncation at 256) -> BertModel forward -> mean pooling over the mask -> L2 normalise

in fp32, and under bf16 autocast when the CPU has native bf16. Short texts: the SST-2 dev
sentences (872); long texts: AG News test articles joined six at a time (a few hundred tokens
each). The methods alternate within each repetition; the median of the repetitions is kept.
Also: the cosine between bf16 and fp32 vectors, and the accuracy of a nearest-centroid
classifier on SST-2 (two halves, fp32 vs bf16 vectors): how far bf16 moves a model.

Results: bench-results/embedding.json and the "Embedding throughput" section of
BENCHMARKS-training.md (replaced between its markers; the rest of the file is left alone).

    python bench/embedding_bench.py [--reps 3] [--long 96] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.ml.data import datasets_dir, read_ag_news  # noqa: E402
from training.ml.device import configure_threads, cpu_flags, cpu_has_native_bf16, use_bf16  # noqa: E402
from training.ml.encoder import MAX_SEQ_LENGTH, load_encoder  # noqa: E402

RESULTS = ROOT / "bench-results" / "embedding.json"
REPORT = ROOT / "BENCHMARKS-training.md"
BEGIN = "<!-- embedding-bench:begin -->"
END = "<!-- embedding-bench:end -->"
BATCH = 64


def read_sst2_dev() -> tuple[list[str], np.ndarray]:
    lines = (datasets_dir() / "sst2_dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    rows = [line.rsplit("\t", 1) for line in lines if "\t" in line]
    return [r[0].strip() for r in rows], np.asarray([int(r[1]) for r in rows])


def long_texts(n: int) -> list[str]:
    texts = [t for _, t in read_ag_news(datasets_dir() / "ag_news_test.csv", limit=n * 6)]
    return [" ".join(texts[i * 6 : i * 6 + 6]) for i in range(n)]


def plain_loop(encoder, texts: list[str], *, bf16: bool, device: str = "cpu") -> np.ndarray:
    """What a developer writes first: input order, pad to the batch's longest, mean pooling."""
    import torch

    tok = encoder.tokenizer
    tok.enable_truncation(max_length=MAX_SEQ_LENGTH)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106
    out = []
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16)
    with torch.inference_mode(), autocast:
        for start in range(0, len(texts), BATCH):
            encs = tok.encode_batch(texts[start : start + BATCH])
            ids = torch.tensor([e.ids for e in encs]).to(device)
            mask = torch.tensor([e.attention_mask for e in encs]).to(device)
            hidden = encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            m = mask.unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=1).cpu().numpy())
    return np.concatenate(out)


def timed(fn) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def nearest_centroid_accuracy(vectors: np.ndarray, y: np.ndarray) -> float:
    """Train on the even rows, test on the odd ones: a model as simple as the head's input."""
    train, test = np.arange(0, len(y), 2), np.arange(1, len(y), 2)
    centroids = np.stack([vectors[train][y[train] == c].mean(0) for c in (0, 1)])
    return float(((vectors[test] @ centroids.T).argmax(1) == y[test]).mean())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(reps: int, n_long: int) -> dict:
    import torch

    threads = configure_threads()
    encoder = load_encoder("cpu")
    native = cpu_has_native_bf16()
    chosen_bf16 = use_bf16("cpu", choice="auto", probe=encoder.time_precisions)
    probe = encoder.time_precisions()
    short, y = read_sst2_dev()
    sets = {"short (SST-2 dev sentences)": short, f"long (AG News, 6 articles joined, {n_long})": long_texts(n_long)}
    encoder.embed(short[:BATCH])  # warm-up
    result = {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "threads": threads,
            "bf16_flags": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "avx512f", "avx2", "amx_tile"}),
            "native_bf16": native,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_before": os.getloadavg()[0],
        },
        "batch_size": BATCH,
        "reps": reps,
        "tally_bf16": chosen_bf16,
        "probe_seconds": {"fp32": round(probe[0], 4), "bf16": round(probe[1], 4)},
        "sets": {},
    }
    for name, texts in sets.items():
        tokens = [len(ids) for ids in encoder.token_ids(texts)]
        methods = {
            "plain fp32": lambda t=texts: plain_loop(encoder, t, bf16=False),
            "tally": lambda t=texts: encoder.embed(t, batch_size=BATCH, bf16=chosen_bf16),
        }
        if native:
            methods["plain bf16"] = lambda t=texts: plain_loop(encoder, t, bf16=True)
        if chosen_bf16:
            methods["tally fp32"] = lambda t=texts: encoder.embed(t, batch_size=BATCH, bf16=False)
        seconds: dict[str, list[float]] = {m: [] for m in methods}
        vectors: dict[str, np.ndarray] = {}
        for _ in range(reps):
            for method, fn in methods.items():
                s, v = timed(fn)
                seconds[method].append(s)
                vectors[method] = v
        rate = {m: len(texts) / statistics.median(s) for m, s in seconds.items()}
        entry = {
            "texts": len(texts),
            "tokens_mean": round(float(np.mean(tokens)), 1),
            "tokens_max": int(max(tokens)),
            "texts_per_s": {m: round(r, 1) for m, r in rate.items()},
            "ratio_tally_to_plain_fp32": round(rate["tally"] / rate["plain fp32"], 3),
        }
        if "plain bf16" in rate:
            entry["ratio_tally_to_plain_bf16"] = round(rate["tally"] / rate["plain bf16"], 3)
        if chosen_bf16:
            fp32 = vectors["tally fp32"]
            entry["bf16_cosine_min"] = round(float((fp32 * vectors["tally"]).sum(1).min()), 5)
            entry["bf16_cosine_mean"] = round(float((fp32 * vectors["tally"]).sum(1).mean()), 5)
            if texts is short:
                entry["nearest_centroid_accuracy"] = {
                    "fp32": round(nearest_centroid_accuracy(fp32, y), 4),
                    "bf16": round(nearest_centroid_accuracy(vectors["tally"], y), 4),
                }
        result["sets"][name] = entry
    result["machine"]["load_average_after"] = os.getloadavg()[0]
    return result


def report(result: dict) -> str:
    m = result["machine"]
    lines = [
        BEGIN,
        "## Embedding throughput (issue 12, item 3; `make bench-embedding`)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['threads']} torch threads), CPU flags "
        f"{', '.join(m['bf16_flags']) or 'none of the bf16 ones'} "
        f"(native bf16: {'yes' if m['native_bf16'] else 'no'}), "
        f"torch {m['torch']}, Python {m['python']}; load average {m['load_average_before']:.1f} before, "
        f"{m['load_average_after']:.1f} after (above 1 per core, other work shared the machine).",
        "",
        f"Batch size {result['batch_size']}, median of {result['reps']} alternating repetitions. "
        f"Tally's encoder ran {'under bf16 autocast' if result['tally_bf16'] else 'in fp32'} "
        f"(the worker's choice: native bf16 flags, then the start-up probe: fp32 "
        f"{result['probe_seconds']['fp32']:.3f} s, bf16 {result['probe_seconds']['bf16']:.3f} s for 8 x 64 tokens). "
        "The plain loop: input order, padding to each batch's longest text, mean pooling.",
        "",
        "| texts | n | tokens mean / max | plain fp32 texts/s | plain bf16 texts/s | Tally texts/s "
        "| Tally / plain fp32 | Tally / plain bf16 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in result["sets"].items():
        r = e["texts_per_s"]
        lines.append(
            f"| {name} | {e['texts']} | {e['tokens_mean']} / {e['tokens_max']} | {r['plain fp32']} | "
            f"{r.get('plain bf16', 'n/a')} | {r['tally']} | {e['ratio_tally_to_plain_fp32']} | "
            f"{e.get('ratio_tally_to_plain_bf16', 'n/a')} |"
        )
    lines += ["", "Target: Tally ≥ 0.9 × the plain loop, short and long texts. GPU: not measured (no GPU here)."]
    for name, e in result["sets"].items():
        if "bf16_cosine_min" in e:
            acc = e.get("nearest_centroid_accuracy")
            extra = (
                f"; nearest-centroid accuracy on SST-2 dev (train even rows, test odd) fp32 {acc['fp32']:.4f}, "
                f"bf16 {acc['bf16']:.4f}"
                if acc
                else ""
            )
            lines.append(
                f"- bf16 against fp32, {name}: cosine min {e['bf16_cosine_min']}, mean {e['bf16_cosine_mean']}{extra}."
            )
    lines.append(END)
    return "\n".join(lines) + "\n"


def write(result: dict) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    section = report(result)
    text = REPORT.read_text() if REPORT.exists() else "# Training benchmarks\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    REPORT.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--long", type=int, default=96, help="long texts (6 AG News articles each)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    result = run(args.reps, args.long)
    print(json.dumps(result, indent=2))
    if not args.no_write:
        write(result)
        print(f"Wrote {RESULTS} and the embedding section of {REPORT}")


if __name__ == "__main__":
    main()
