"""Where and how a run computes: the device, the autocast precision, the data-loader
workers, and process-level settings that make CPU training faster without changing any number.
Training, evaluation and prediction all take these from here, so they agree."""

from __future__ import annotations

import ctypes
import os
import sys
from typing import TYPE_CHECKING

from salgl.errors import SalglError

if TYPE_CHECKING:  # torch is imported where it is used: checking images needs only the cores
    import torch


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def select_device(setting: str, key: str = "train.<dataset>.device") -> torch.device:
    """``auto``: CUDA when present; ``cuda`` without a GPU is an error naming ``key``."""
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise SalglError(f"{key}: cuda requested but no CUDA device is present")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def autocast_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """The precision training runs in, and evaluation with it: bf16 where the GPU has it,
    else fp16, on CUDA with ``amp``; None (fp32) otherwise."""
    import torch

    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def loader_workers(device: torch.device) -> int:
    """Data-loader worker processes: leave the cores to the model on CPU; feed a GPU with
    most of them."""
    cores = cpu_cores()
    if device.type == "cuda":
        return max(1, min(16, cores - 1))
    return 1 if cores >= 2 else 0


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Ask glibc to serve large tensors from its heap and keep freed memory for reuse.

    By default every allocation above 128 KiB is a fresh mmap that is unmapped when freed,
    so each training step page-faults its whole activation memory back in (measured: 1.3 s
    of a 6.2 s ResNet-50 step on 2 cores). PyTorch's CPU tuning guide recommends jemalloc or
    tcmalloc for the same reason; this needs no extra library. Returns False where it does
    not apply (not Linux/glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
                    and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 31))
    except (OSError, AttributeError):
        return False
