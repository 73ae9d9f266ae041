"""The deep loop: fine-tune all-MiniLM-L6-v2 together with a linear head on the labels.

The result embeds texts with its own (fine-tuned) encoder; the service caches those
embeddings under the version's encoder key, so later fast runs can train heads on them.
On a GPU (bf16 autocast) a few hundred labels take seconds; on two CPU cores, minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from .classifiers import Dataset, FitResult, HeadClassifier, HyperParams
from .encoder import EMBEDDING_DIM


class FineTunedClassifier(HeadClassifier):
    kind = "minilm-ft"

    def __init__(self, classes, params=None, *, encoder=None):
        params = params or HyperParams()
        params.epochs = params.epochs or 4
        params.batch_size = params.batch_size or 16
        params.learning_rate = params.learning_rate or 2e-3  # the head's rate (the encoder's is separate)
        super().__init__(classes, params)
        self.encoder = encoder  # an encoder.Encoder whose model this classifier owns and trains

    def featurize(self, texts: Sequence[str]) -> np.ndarray:
        bf16 = getattr(self, "device", "cpu") == "cuda"
        return self.encoder.embed(list(texts), max_length=self.params.max_length, bf16=bf16)

    def _penalty(self, n):
        return 0.0

    def fit(
        self,
        train: Dataset,
        evaluation: Dataset | None = None,
        *,
        device: str = "cpu",
        on_epoch: Callable[[dict], None] | None = None,
    ) -> FitResult:
        import torch

        from .device import seed_everything
        from .encoder import load_encoder

        started = time.perf_counter()
        seed_everything(self.params.seed)
        self.device = device
        if self.encoder is None:
            self.encoder = load_encoder(device)
        self.encoder.model.to(device)
        self.net = self._build().to(device)
        texts = list(train.texts)
        targets = torch.as_tensor(np.asarray(train.targets, dtype=np.float32))
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
        eval_y = np.asarray(evaluation.targets).argmax(1) if evaluation is not None and len(evaluation) else None
        generator = torch.Generator().manual_seed(self.params.seed)
        history = []
        for epoch in range(1, self.params.epochs + 1):
            self.encoder.model.train()
            self.net.train()
            perm = torch.randperm(n, generator=generator).tolist()
            total = 0.0
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                ids, mask = self.encoder.tokenize([texts[i] for i in idx], max_length=self.params.max_length)
                with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
                    logits = self.net(self.encoder.forward_pooled(ids, mask)).float()
                loss = -(targets[idx].to(device) * torch.log_softmax(logits, dim=1)).sum(1).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.encoder.model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(idx)
            self.encoder.model.eval()
            row = {"epoch": epoch, "train_loss": total / n, "eval_accuracy": None}
            if eval_y is not None:
                probs = self.predict_proba(self.featurize(evaluation.texts))
                row["eval_accuracy"] = float((probs.argmax(1) == eval_y).mean())
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)
        self.encoder.model.eval()
        self.net.eval()
        return FitResult(history=history, seconds=time.perf_counter() - started)

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
        from .encoder import Encoder, build_model, load_tokenizer, package_model_dir

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
