"""The deep loop: fine-tune all-MiniLM-L6-v2 together with a linear head on the labels.

The head starts as the fast loop's head fitted on the frozen encoder's embeddings of the
training texts (linear probing, then fine-tuning), not from random weights.

The result embeds texts with its own (fine-tuned) encoder; the service caches those
embeddings under the version's encoder key, so later fast runs can train heads on them.
On a GPU (bf16 autocast) a few hundred labels take seconds; on two CPU cores, minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace

import numpy as np

from . import loop
from .classifiers import Dataset, HeadClassifier, HyperParams
from .encoder import EMBEDDING_DIM, Encoder, build_model, load_encoder, load_tokenizer, package_model_dir


class FineTunedClassifier(HeadClassifier):
    kind = "minilm-ft"

    def __init__(self, classes, params=None, *, encoder=None):
        super().__init__(classes, params)
        self.encoder = encoder  # an encoder.Encoder whose model this classifier owns and trains

    @classmethod
    def _with_defaults(cls, params):
        # the deep loop's own defaults first, then the head's (l2 among them, unused here)
        params = replace(
            params,
            epochs=params.epochs or 4,
            batch_size=params.batch_size or 16,
            learning_rate=params.learning_rate or 2e-3,  # the head's rate (the encoder's is separate)
        )
        return super()._with_defaults(params)

    def featurize(self, texts: Sequence[str]) -> np.ndarray:
        bf16 = getattr(self, "device", "cpu") == "cuda"
        return self.encoder.embed(list(texts), max_length=self.params.max_length, bf16=bf16)

    def _penalty(self, n):
        return 0.0

    def _fit_threads(self, device: str):
        """Fine-tuning keeps TALLY_TRAINING_THREADS (see small_model_threads)."""
        return nullcontext()

    def _plan(self, train: Dataset, evaluation: Dataset | None) -> loop.Plan:
        """MiniLM and the head trained together on tokenised texts: AdamW with one rate per
        part, linear warm-up and decay, the encoder's gradients clipped, bf16 on a GPU."""
        import torch

        device = self.device
        if self.encoder is None:
            self.encoder = load_encoder(device)
        self.encoder.model.to(device)
        texts = list(train.texts)
        targets = torch.as_tensor(np.asarray(train.targets, dtype=np.float32))
        self.net = self._probed_head(texts, train.targets).to(device)
        n, bs = len(texts), self.params.batch_size
        steps = self.params.epochs * ((n + bs - 1) // bs)
        optimizer = torch.optim.AdamW(
            [
                {"params": self.encoder.model.parameters(), "lr": self.params.encoder_learning_rate},
                {"params": self.net.parameters(), "lr": self.params.learning_rate},
            ],
            weight_decay=0.01,
        )
        warmup = max(1, steps // 10)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
        )
        has_eval = evaluation is not None and len(evaluation) > 0
        eval_y = np.asarray(evaluation.targets).argmax(1) if has_eval else None

        def batches(generator):
            perm = torch.randperm(n, generator=generator).tolist()
            return [perm[start : start + bs] for start in range(0, n, bs)]

        def batch_loss(idx):
            ids, mask = self.encoder.tokenize([texts[i] for i in idx], max_length=self.params.max_length)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
                logits = self.net(self.encoder.forward_pooled(ids, mask)).float()
            return loop.soft_cross_entropy(logits, targets[idx].to(device))

        def predict_eval():
            return self.predict_proba(self.featurize(evaluation.texts)).argmax(1)

        return loop.Plan(
            n=n,
            epochs=self.params.epochs,
            modules=[self.encoder.model, self.net],
            optimizers=[optimizer],
            schedulers=[scheduler],
            clip=lambda: torch.nn.utils.clip_grad_norm_(self.encoder.model.parameters(), 1.0),
            batches=batches,
            batch_loss=batch_loss,
            predict_eval=predict_eval if has_eval else None,
            eval_y=eval_y,
            eval_modules=[self.encoder.model, self.net],
        )

    def _probed_head(self, texts: list[str], targets) -> object:
        """The head to fine-tune from: the fast loop's head (its defaults, this run's l2 and
        hidden) fitted on the encoder's embeddings of the training texts before any fine-tuning
        ("linear probing, then fine-tuning", Kumar et al., ICLR 2022). From a random head the
        encoder's first steps follow the gradients of a head that knows nothing: on the same
        128 AG News labels (the sorted-file bench's product order, 3 seeds) the deep loop scored
        0.842 from a random head and 0.867 from this one (BENCHMARKS-training.md, sorted file)."""
        head = HeadClassifier(
            self.classes, HyperParams(seed=self.params.seed, hidden=self.params.hidden, l2=self.params.l2)
        )
        head.fit(Dataset(features=self.featurize(texts), targets=targets), device=self.device)
        return head.net

    def state(self) -> tuple[dict, dict]:
        tensors = {f"head.{k}": v for k, v in self.net.state_dict().items()}
        tensors.update({f"encoder.{k}": v for k, v in self.encoder.model.state_dict().items()})
        return tensors, {
            "kind": self.kind,
            "classes": self.classes,
            "params": self.params.as_dict(),
            "embedding_dim": EMBEDDING_DIM,
        }

    @classmethod
    def from_state(cls, tensors: dict, meta: dict, *, device: str = "cpu", **kwargs) -> FineTunedClassifier:
        model_dir = package_model_dir()
        bert = build_model(model_dir)
        bert.load_state_dict({k[len("encoder.") :]: v for k, v in tensors.items() if k.startswith("encoder.")})
        bert.to(device).eval()
        clf = cls(
            meta["classes"],
            HyperParams(**meta["params"]),
            encoder=Encoder(tokenizer=load_tokenizer(model_dir), model=bert, device=device),
        )
        clf.device = device
        clf.net = clf._build()
        clf.net.load_state_dict({k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")})
        clf.net.to(device).eval()
        return clf
