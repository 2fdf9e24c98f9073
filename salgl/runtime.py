"""Process-level settings that make CPU training faster without changing any number."""

from __future__ import annotations

import ctypes
import os
import sys


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
