"""Fixed-seed reference of the torch code, for refactors that must not change results.

    .venv/bin/python bench/training_equivalence.py record /tmp/ref.npz
    .venv/bin/python bench/training_equivalence.py check /tmp/ref.npz

Fits a HashedClassifier, a HeadClassifier (linear and one hidden layer) and, with --deep, a
FineTunedClassifier (MiniLM, one tiny epoch) on small synthetic data with fixed seeds, and
saves their predicted probabilities, training histories and resolved hyper-parameters. `check`
refits and compares: probabilities equal to float tolerance, histories and parameters equal.
No database; CPU only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POS = ["good", "great", "excellent", "wonderful", "superb", "lovely"]
NEG = ["bad", "awful", "terrible", "horrible", "dreadful", "poor"]
FILL = ["the film was", "this book is", "our dinner was", "that concert felt"]


def texts(n: int) -> tuple[list[str], np.ndarray]:
    out, y = [], []
    for i in range(n):
        words = POS if i % 2 == 0 else NEG
        out.append(f"{FILL[i % len(FILL)]} {words[(i // 2) % len(words)]} number {i}")
        y.append(i % 2)
    return out, np.asarray(y)


def results(deep: bool) -> dict:
    from training.ml.classifiers import Dataset, HashedClassifier, HeadClassifier, HyperParams

    out: dict = {}
    classes = ["positive", "negative"]
    x, y = texts(60)
    onehot = np.eye(2, dtype=np.float32)[y]
    for name, params in {
        "hashed": HyperParams(seed=3),
        "hashed_small_batch": HyperParams(seed=5, epochs=4, batch_size=7, buckets=1 << 12, dim=16),
        "hashed_full_batch": HyperParams(seed=9, epochs=6, batch_size=1000, buckets=1 << 10, dim=8),
    }.items():
        model = HashedClassifier(classes, params)
        fit = model.fit(Dataset(texts=x[:40], targets=onehot[:40]), Dataset(texts=x[40:], targets=onehot[40:]))
        out[name] = (model.predict_texts(x), fit.history, model.params.as_dict())

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 384)).astype(np.float32)
    yy = np.repeat(np.arange(3), 30)
    feats = centers[yy] + 0.8 * rng.normal(size=(90, 384)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    soft = np.eye(3, dtype=np.float32)[yy] * 0.8 + 0.2 / 3
    for name, params in {
        "head_linear": HyperParams(seed=1, epochs=30),
        "head_hidden": HyperParams(seed=2, epochs=20, hidden=32, batch_size=16),
    }.items():
        model = HeadClassifier(["a", "b", "c"], params)
        fit = model.fit(
            Dataset(features=feats[::2], targets=soft[::2]), Dataset(features=feats[1::2], targets=soft[1::2])
        )
        out[name] = (model.predict_proba(feats), fit.history, model.params.as_dict())

    if deep:
        from training.ml.finetune import FineTunedClassifier

        model = FineTunedClassifier(classes, HyperParams(seed=4, epochs=2, max_length=32, batch_size=8))
        fit = model.fit(Dataset(texts=x[:16], targets=onehot[:16]), Dataset(texts=x[16:24], targets=onehot[16:24]))
        out["finetuned"] = (model.predict_texts(x[:24]), fit.history, model.params.as_dict())
    return out


def main() -> None:
    mode, path = sys.argv[1], Path(sys.argv[2])
    deep = "--deep" in sys.argv
    got = results(deep)
    if mode == "record":
        np.savez(path, **{k: v[0] for k, v in got.items()})
        path.with_suffix(".json").write_text(json.dumps({k: [v[1], v[2]] for k, v in got.items()}, indent=1))
        print(f"recorded {sorted(got)} to {path}")
        return
    ref = np.load(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    for name, (probs, history, params) in got.items():
        exact = np.array_equal(ref[name], probs)
        diff = float(np.abs(ref[name] - probs).max())
        same_meta = meta[name] == [json.loads(json.dumps(history)), params]
        print(f"{name:20s} probs identical={exact} max|diff|={diff:.3g} history+params equal={same_meta}")
        assert diff <= 1e-6 and same_meta, name
    print("equivalent")


if __name__ == "__main__":
    main()
