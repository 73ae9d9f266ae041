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
    """Embedding and fine-tuning threads: TALLY_TRAINING_THREADS, or every core of the machine
    (os.cpu_count()) when it is 0, the default. On a machine shared with the web server and
    the database, set it lower."""
    import torch

    global _threads_set
    n = threads or _setting_threads() or os.cpu_count() or 1
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


# --- bf16 on the CPU ------------------------------------------------------------------------

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
BF16_CHOICES = ("auto", "on", "off")
_bf16_probe: dict[str, bool] = {}


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                cpuinfo = fh.read()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """AVX512-BF16 (AMD Zen 4+, Intel Cooper Lake+) or AMX-BF16 (Sapphire Rapids+): bf16 matmuls
    in hardware. Without them torch emulates bf16 on the CPU, slower than fp32."""
    return bool(cpu_flags(cpuinfo) & set(BF16_CPU_FLAGS))


def use_bf16(device: str, choice: str | None = None, probe=None) -> bool:
    """Whether embedding runs under bf16 autocast on `device`. Always on a GPU. On a CPU,
    TALLY_EMBED_BF16 decides: "on", "off", or "auto" (default): only where the CPU has native
    bf16, and then only if `probe` (timing fp32 against bf16 on a small batch, once per process)
    finds bf16 faster: flags alone do not promise speed on every torch build."""
    if device == "cuda":
        return True
    choice = choice or _setting("TALLY_EMBED_BF16", "auto")
    if choice not in BF16_CHOICES:
        raise ValueError(f"TALLY_EMBED_BF16 must be one of {', '.join(BF16_CHOICES)}, not {choice!r}.")
    if choice != "auto":
        return choice == "on"
    if not cpu_has_native_bf16():
        return False
    if probe is None:
        return True
    if device not in _bf16_probe:
        fp32_s, bf16_s = probe()
        _bf16_probe[device] = bf16_s < fp32_s
    return _bf16_probe[device]


def _setting(name: str, default: str) -> str:
    try:
        from django.conf import settings

        return str(getattr(settings, name, default) or default)
    except Exception:  # outside Django (benchmarks): the environment decides
        return os.environ.get(name, default) or default


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
