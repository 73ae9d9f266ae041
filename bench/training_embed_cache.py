"""Embed the AG News test split once with MiniLM and keep it in var/bench/ (gitignored), so the
training benchmarks never recompute 7,600 embeddings (about two minutes on two cores)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.ml.data import read_ag_news  # noqa: E402
from training.ml.encoder import ENCODER_KEY  # noqa: E402

CACHE = ROOT / "var" / "bench" / f"ag_news_{ENCODER_KEY.replace('@', '_')}.npy"


def ag_news_embeddings(verbose: bool = True) -> np.ndarray:
    if CACHE.exists():
        emb = np.load(CACHE)
        if emb.shape == (7600, 384):
            return emb
    from training.ml.device import configure_threads
    from training.ml.encoder import load_encoder

    configure_threads()
    encoder = load_encoder("cpu")
    texts = [t for _, t in read_ag_news()]
    t0 = time.perf_counter()

    def progress(done, total):
        if verbose and done % 1024 < 64:
            print(f"  embedded {done}/{total} ({done / (time.perf_counter() - t0):.0f}/s)", flush=True)

    emb = encoder.embed(texts, batch_size=64, progress=progress)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.save(CACHE, emb)
    if verbose:
        print(f"embedded {len(texts)} texts in {time.perf_counter() - t0:.1f} s -> {CACHE}")
    return emb


if __name__ == "__main__":
    ag_news_embeddings()
