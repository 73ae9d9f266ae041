"""Weights on disk: safetensors files inside the model store (TALLY_MODEL_STORE), loaded only
from there. A path that escapes the store is refused, so a row in the database can never make
the worker read an arbitrary file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


class StoreError(RuntimeError):
    pass


def store_path(store: Path, relative: str) -> Path:
    root = Path(store).resolve()
    path = (root / relative).resolve()
    if root != path and root not in path.parents:
        raise StoreError(f"Refusing to use weights outside the model store: {relative!r}.")
    if path.suffix != ".safetensors":
        raise StoreError(f"Weights must be a .safetensors file, not {relative!r}.")
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(*, store: Path, relative: str, tensors: dict, metadata: dict) -> str:
    """Write atomically (temp file + rename) and return the file's sha256."""
    from safetensors.torch import save_file

    path = store_path(store, relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in metadata.items()})
    os.replace(tmp, path)
    return sha256_file(path)


def load_weights(*, store: Path, relative: str, expected_sha256: str | None = None) -> tuple[dict, dict]:
    """Tensors and metadata of a stored file; with `expected_sha256`, refuse a file that changed."""
    from safetensors import safe_open

    path = store_path(store, relative)
    if not path.is_file():
        raise StoreError(f"Weights file {relative!r} is missing from the model store {store}.")
    if expected_sha256 and sha256_file(path) != expected_sha256:
        raise StoreError(f"Weights file {relative!r} does not match its recorded sha256; refusing to load it.")
    tensors = {}
    with safe_open(str(path), framework="pt") as fh:
        raw_meta = fh.metadata() or {}
        for key in fh.keys():  # noqa: SIM118
            tensors[key] = fh.get_tensor(key)
    return tensors, {k: json.loads(v) for k, v in raw_meta.items()}
