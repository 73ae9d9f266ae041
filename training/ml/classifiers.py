"""Text classifiers with one interface (featurize, fit, predict_proba, explain, save/load).

- HashedClassifier ("hashed"): fastText-style, from scratch. Lower-cased words and word
  bigrams are hashed (crc32, stable across processes) into buckets of an EmbeddingBag whose
  mean feeds a linear layer. Needs no pretrained weights; trains in well under a second.
- HeadClassifier ("minilm"): a small head (linear, or one hidden layer) on frozen MiniLM
  sentence embeddings, which the service caches per example and encoder version.
- FineTunedClassifier ("minilm-ft", the deep loop, in finetune.py): MiniLM itself is trained
  together with the head.

torch is imported inside methods only (see training/ml/__init__.py).
"""

from __future__ import annotations

import math
import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import ClassVar

import numpy as np

from . import loop
from .device import seed_everything, small_model_threads

WORD_RE = re.compile(r"\w+", re.UNICODE)
# Scripts written without spaces between words (Chinese, Japanese kana, Thai, Lao, Myanmar,
# Khmer): `\w+` matches a whole clause there, so such runs become single characters, and the
# bigram step below adds their adjacent pairs (the usual character n-grams for these scripts).
UNSPACED_CHARS = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
UNSPACED_RE = re.compile(f"([{UNSPACED_CHARS}]+)")
# What an explanation occludes: a run of non-space characters, or one character of an
# unspaced script (a whole clause is one `\S+` there).
EXPLAIN_SPAN_RE = re.compile(f"[{UNSPACED_CHARS}]|[^\\s{UNSPACED_CHARS}]+")
MAX_EXPLAIN_SEGMENTS = 96
# The head's penalty is l2 / n at this many labels and decays as 1 / sqrt(n) (HeadClassifier).
L2_REFERENCE_LABELS = 128


@dataclass(frozen=True)
class HyperParams:
    """Defaults chosen on AG News / SST-2 (docs/training.md); stored with every version.

    Frozen: a classifier fills in its kind's defaults (the zeros below) on a copy
    (`dataclasses.replace`, in `_with_defaults`), never on the caller's object."""

    seed: int = 0
    epochs: int = 0  # 0: chosen from the data size
    learning_rate: float = 0.0  # 0: the model kind's default
    weight_decay: float = 0.0
    l2: float = 0.0  # head: penalty l2 / sqrt(128 n_train) * ||W||^2 (weaker as labels grow)
    batch_size: int = 0  # 0: full batch for the head, 32 for the hashed model
    hidden: int = 0  # head: 0 = linear
    buckets: int = 1 << 18  # hashed
    dim: int = 64  # hashed
    max_length: int = 128  # deep loop
    encoder_learning_rate: float = 3e-5  # deep loop
    # hashed: how text splits into tokens ("words": versions stored before unspaced scripts
    # were split into characters, which must keep hashing as they were trained)
    segmenter: str = "words+unspaced-chars"

    # Stored with a version but never set through a project's settings.
    NOT_SETTABLE: ClassVar[frozenset[str]] = frozenset({"seed", "segmenter"})

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Dataset:
    """Texts and/or precomputed features, with soft targets [n, k] (vote shares) when training."""

    texts: Sequence[str] | None = None
    features: object | None = None
    targets: np.ndarray | None = None

    def __len__(self) -> int:
        if self.targets is not None:
            return len(self.targets)
        if self.texts is not None:
            return len(self.texts)
        return len(self.features)


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # [{"epoch", "train_loss", "eval_accuracy"}]
    seconds: float = 0.0


class TextClassifier:
    kind: str = ""

    def __init__(self, classes: Sequence[str], params: HyperParams | None = None):
        if len(classes) < 2:
            raise ValueError("A classifier needs at least two classes.")
        self.classes = list(classes)
        self.params = self._with_defaults(params or HyperParams())
        self.net = None

    @classmethod
    def _with_defaults(cls, params: HyperParams) -> HyperParams:
        """`params` with this kind's defaults in place of the zeros (a copy)."""
        return params

    # -- to implement -------------------------------------------------------------------
    def featurize(self, texts: Sequence[str]):
        raise NotImplementedError

    def _build(self):
        raise NotImplementedError

    def _logits(self, features, batch):
        raise NotImplementedError

    def _batches(self, features, indices):
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------
    def _prepare(self, features):
        """Features as the model consumes them (e.g. one tensor on the device), converted once."""
        return features

    def _features(self, data: Dataset):
        return data.features if data.features is not None else self.featurize(data.texts)

    def _default_epochs(self, n: int) -> int:
        return self.params.epochs or 20

    def _penalty(self, n: int):
        return 0.0

    def _optimizers(self):
        import torch

        return [
            torch.optim.AdamW(
                self.net.parameters(), lr=self.params.learning_rate, weight_decay=self.params.weight_decay
            )
        ]

    def _fit_threads(self, device: str):
        """A small model trains on one CPU thread (see small_model_threads)."""
        return small_model_threads(device)

    def fit(
        self,
        train: Dataset,
        evaluation: Dataset | None = None,
        *,
        device: str = "cpu",
        on_epoch: Callable[[dict], None] | None = None,
    ) -> FitResult:
        """Train from scratch with the shared loop (training/ml/loop.py), under a fixed seed."""
        with self._fit_threads(device):
            started = time.perf_counter()
            seed_everything(self.params.seed)
            self.device = device
            plan = self._plan(train, evaluation)
            history = loop.fit(plan, seed=self.params.seed, on_epoch=on_epoch)
            return FitResult(history=history, seconds=time.perf_counter() - started)

    def _plan(self, train: Dataset, evaluation: Dataset | None) -> loop.Plan:
        """Features prepared once; full-batch steps when the batch covers the training set,
        else shuffled mini-batches; soft cross-entropy plus the kind's penalty."""
        import torch

        device = self.device
        features = self._prepare(self._features(train))
        targets = torch.as_tensor(np.asarray(train.targets, dtype=np.float32)).to(device)
        has_eval = evaluation is not None and len(evaluation) > 0
        eval_features = self._prepare(self._features(evaluation)) if has_eval else None
        eval_y = torch.as_tensor(np.asarray(evaluation.targets).argmax(1)).to(device) if has_eval else None
        self.net = self._build().to(device)
        n = len(targets)
        bs = self.params.batch_size or n

        def batches(generator):
            if bs >= n:  # full batch: no shuffling or gathering
                return [None]
            perm = torch.randperm(n, generator=generator).numpy()
            return [perm[start : start + bs] for start in range(0, n, bs)]

        def batch_loss(idx):
            logits = self._logits(features, self._batches(features, idx))
            t = targets if idx is None else targets[idx]
            return loop.soft_cross_entropy(logits, t) + self._penalty(n)

        def predict_eval():
            return self._logits(eval_features, self._batches(eval_features, None)).argmax(1)

        return loop.Plan(
            n=n,
            epochs=self._default_epochs(n),
            modules=[self.net],
            optimizers=self._optimizers(),
            batches=batches,
            batch_loss=batch_loss,
            predict_eval=predict_eval if has_eval else None,
            eval_y=eval_y,
            eval_modules=[self.net],
        )

    def predict_proba(self, features, *, batch_size: int = 8192) -> np.ndarray:
        if self.net is None:
            raise RuntimeError("The model is not trained or loaded.")
        if not getattr(self, "encoder", None):  # a small model: one thread (see small_model_threads)
            with small_model_threads(getattr(self, "device", "cpu")):
                return self._predict(features, batch_size)
        return self._predict(features, batch_size)

    def _predict(self, features, batch_size):
        import torch

        self.net.eval()
        features = self._prepare(features)
        n = len(features)
        out = np.zeros((n, len(self.classes)), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, n, batch_size):
                idx = np.arange(start, min(start + batch_size, n))
                out[idx] = torch.softmax(self._logits(features, self._batches(features, idx)), 1).float().cpu().numpy()
        return out

    def predict_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_proba(self.featurize(texts))

    def explain(self, text: str, *, label_index: int | None = None) -> dict:
        """Occlusion: drop each word (or span of words, for long texts) and measure how much the
        probability of the label falls. Positive weight = the word pushed toward the label."""
        spans = [(m.start(), m.end()) for m in EXPLAIN_SPAN_RE.finditer(text)]
        groups = max(1, math.ceil(len(spans) / MAX_EXPLAIN_SEGMENTS))
        segments = [(spans[i][0], spans[min(i + groups, len(spans)) - 1][1]) for i in range(0, len(spans), groups)]
        variants = [text] + [text[:s] + " " + text[e:] for s, e in segments]
        probs = self.predict_texts(variants)
        label = int(probs[0].argmax()) if label_index is None else label_index
        base = float(probs[0, label])
        tokens = [
            {"text": text[s:e], "start": s, "end": e, "weight": base - float(probs[i + 1, label])}
            for i, (s, e) in enumerate(segments)
        ]
        return {
            "label": self.classes[label],
            "label_index": label,
            "probability": base,
            "method": "occlusion",
            "tokens": tokens,
        }

    def state(self) -> tuple[dict, dict]:
        """Tensors and metadata for a safetensors file."""
        meta = {"kind": self.kind, "classes": self.classes, "params": self.params.as_dict()}
        return dict(self.net.state_dict()), meta

    @classmethod
    def from_state(cls, tensors: dict, meta: dict, **kwargs) -> TextClassifier:
        params = {"segmenter": "words", **meta["params"]}  # stored before the segmenter was
        model = cls(meta["classes"], HyperParams(**params), **kwargs)
        model.device = "cpu"
        model.net = model._build()
        model.net.load_state_dict(tensors)
        model.net.eval()
        return model


# --- from scratch: hashed words and bigrams ---------------------------------------------


@dataclass
class HashedFeatures:
    ids: np.ndarray  # int64, all texts' bucket ids one after another
    offsets: np.ndarray  # int64 [n + 1]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def take(self, idx) -> HashedFeatures:
        parts = [self.ids[self.offsets[i] : self.offsets[i + 1]] for i in idx]
        lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return HashedFeatures(ids=ids, offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def text_tokens(text: str, segmenter: str = HyperParams.segmenter) -> list[str]:
    words = WORD_RE.findall(text.lower())
    if segmenter == "words":
        return words
    tokens = []
    for word in words:
        if not UNSPACED_RE.search(word):
            tokens.append(word)
            continue
        for i, piece in enumerate(UNSPACED_RE.split(word)):
            if i % 2:  # a captured unspaced run
                tokens.extend(piece)
            elif piece:
                tokens.append(piece)
    return tokens


def hash_tokens(text: str, buckets: int, segmenter: str = HyperParams.segmenter) -> list[int]:
    words = [w.encode("utf-8") for w in text_tokens(text, segmenter)]
    grams = words + [a + b" " + b for a, b in zip(words, words[1:], strict=False)]
    return [zlib.crc32(g) % buckets for g in grams]


class HashedClassifier(TextClassifier):
    kind = "hashed"

    @classmethod
    def _with_defaults(cls, params):
        return replace(params, learning_rate=params.learning_rate or 0.05, batch_size=params.batch_size or 32)

    def featurize(self, texts):
        ids, lengths = [], []
        for text in texts:
            grams = hash_tokens(text, self.params.buckets, self.params.segmenter)
            ids.extend(grams)
            lengths.append(len(grams))
        return HashedFeatures(
            ids=np.asarray(ids, dtype=np.int64),
            offsets=np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64),
        )

    def _default_epochs(self, n):
        # fastText-like: a few passes over large data, more over small; bounded total steps.
        return self.params.epochs or int(min(30, max(4, 20_000 // max(n, 1))))

    def _build(self):
        import torch

        class Net(torch.nn.Module):
            def __init__(self, buckets, dim, k):
                super().__init__()
                self.embedding = torch.nn.EmbeddingBag(buckets, dim, mode="mean", sparse=True)
                self.fc = torch.nn.Linear(dim, k)
                torch.nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)

            def forward(self, ids, offsets):
                return self.fc(self.embedding(ids, offsets))

        return Net(self.params.buckets, self.params.dim, len(self.classes))

    def _optimizers(self):
        import torch

        return [
            torch.optim.SparseAdam(list(self.net.embedding.parameters()), lr=self.params.learning_rate),
            torch.optim.AdamW(
                self.net.fc.parameters(), lr=self.params.learning_rate, weight_decay=self.params.weight_decay
            ),
        ]

    def _batches(self, features, idx):
        return features if idx is None else features.take(idx)

    def _logits(self, features, batch):
        import torch

        dev = getattr(self, "device", "cpu")
        ids = torch.as_tensor(batch.ids, device=dev)
        offsets = torch.as_tensor(batch.offsets[:-1], device=dev)
        return self.net(ids, offsets)


# --- a head on frozen sentence embeddings -----------------------------------------------


class HeadClassifier(TextClassifier):
    kind = "minilm"

    def __init__(self, classes, params=None, *, encoder_loader: Callable[[], object] | None = None):
        super().__init__(classes, params)
        self._encoder_loader = encoder_loader

    @classmethod
    def _with_defaults(cls, params):
        return replace(params, learning_rate=params.learning_rate or 0.1, l2=params.l2 or 25.0)

    def featurize(self, texts):
        if self._encoder_loader is None:
            raise RuntimeError("This head has no encoder to embed raw texts with.")
        return self._encoder_loader().embed(list(texts))

    def _default_epochs(self, n):
        return self.params.epochs or 60

    def _penalty(self, n):
        # l2 / sqrt(L2_REFERENCE_LABELS * n): l2 / n at 128 labels, weaker below, stronger
        # above. A fixed decay lost to l2 / n at every size (AG News, docs/training.md); l2 / n
        # in turn was too strong at 32-64 labels and too weak at 512, on AG News and SST-2
        # alike (10 random label sets per size, BENCHMARKS-training.md, sorted file).
        weights = [p for name, p in self.net.named_parameters() if name.endswith("weight")]
        return (self.params.l2 / math.sqrt(L2_REFERENCE_LABELS * max(n, 1))) * sum((w**2).sum() for w in weights)

    def _build(self):
        import torch

        # Unit-length MiniLM vectors have small coordinates: scale them so that the head's
        # logits move at a sensible learning rate.
        class Net(torch.nn.Module):
            def __init__(self, dim, hidden, k):
                super().__init__()
                self.scale = 10.0
                if hidden:
                    self.body = torch.nn.Sequential(
                        torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Dropout(0.1), torch.nn.Linear(hidden, k)
                    )
                else:
                    self.body = torch.nn.Linear(dim, k)

            def forward(self, x):
                return self.body(x * self.scale)

        return Net(384, self.params.hidden, len(self.classes))

    def _prepare(self, features):
        import torch

        if isinstance(features, torch.Tensor):
            return features
        return torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32)).to(getattr(self, "device", "cpu"))

    def _batches(self, features, idx):
        return features if idx is None else features[idx]

    def _logits(self, features, batch):
        return self.net(batch)


KINDS = {"hashed": HashedClassifier, "minilm": HeadClassifier}
