"""Which device the worker trains on, and CPU thread settings."""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager
from dataclasses import dataclass

VALID_CHOICES = ("auto", "cpu", "cuda")


class DeviceUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class DeviceInfo:
    device: str  # "cpu" or "cuda"
    name: str  # "NVIDIA H100 80GB HBM3" or "cpu: x86_64, 2 threads"


_threads_set = False


def configure_threads(threads: int | None = None) -> int:
    """Two cores are shared with the web server and the database: use at most what we were
    given (TALLY_TRAINING_THREADS), never the torch default of every core."""
    import torch

    global _threads_set
    n = threads or _setting_threads() or min(2, os.cpu_count() or 1)
    if not _threads_set or torch.get_num_threads() != n:
        torch.set_num_threads(n)
        _threads_set = True
    return n


@contextmanager
def small_model_threads(device: str):
    """One CPU thread while training a small model: its ops are tiny, and on a busy 2-core
    machine OpenMP threads spinning against each other made a head's 150 epochs 10-30x slower
    (docs/training.md). Embedding and fine-tuning keep TALLY_TRAINING_THREADS."""
    import torch

    if device != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _setting_threads() -> int:
    try:
        from django.conf import settings

        return int(getattr(settings, "TALLY_TRAINING_THREADS", 0) or 0)
    except Exception:  # outside Django (benchmarks): the environment decides
        return int(os.environ.get("TALLY_TRAINING_THREADS", "0") or 0)


def resolve_device(choice: str = "auto") -> DeviceInfo:
    """cuda when torch sees a GPU, else cpu; `choice` (the TALLY_TRAINING_DEVICE setting) can
    force either. Forcing cuda on a machine without one is an error, not a silent fallback."""
    import torch

    if choice not in VALID_CHOICES:
        raise ValueError(f"TALLY_TRAINING_DEVICE must be one of {', '.join(VALID_CHOICES)}, not {choice!r}.")
    want_cuda = choice == "cuda" or (choice == "auto" and torch.cuda.is_available())
    if want_cuda:
        if not torch.cuda.is_available():
            raise DeviceUnavailable("TALLY_TRAINING_DEVICE=cuda but torch sees no CUDA device on this worker.")
        return DeviceInfo(device="cuda", name=torch.cuda.get_device_name(0))
    threads = configure_threads()
    return DeviceInfo(device="cpu", name=f"cpu: {platform.machine()}, {threads} threads")


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
