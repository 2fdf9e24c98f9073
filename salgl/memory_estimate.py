"""How much memory a model file asks for, estimated before anything is allocated.

A model file's config decides the sizes of everything built from it, and a file may come
from anywhere, so :func:`salgl.checkpoint.load_model` builds the model on torch's meta device
first (shapes, no memory), estimates what loading and running it would take, and stops with
one line saying how much it would need when that is beyond :func:`memory_limit`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from salgl.errors import SalglError, printable

# safetensors dtype names and their bytes per element: weights floating, counters integer.
FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
INT_DTYPES = {"I8": 1, "I16": 2, "I32": 4, "I64": 8, "U8": 1, "U16": 2, "U32": 4, "U64": 8}
BOOL_DTYPES = {"BOOL": 1}
EXAMPLE_BATCH = 2  # images the estimate covers by default: export traces (2, 3, S, S)
# Peak backbone activations per input pixel and image, without gradients: measured 190 to
# 380 bytes (resnet50, vit_base_patch16, efficientnet_b0, convnext_tiny, tresnet_m at 512 px),
# rounded up.
BACKBONE_BYTES_PER_PIXEL = 512
LABEL_CHUNK_BYTES = 4 << 22  # salgl.model.layers.CHUNK_ELEMENTS fp32 values
MEMORY_LIMIT_ENV = "SALGL_MEMORY_LIMIT_GB"


@dataclass
class MemoryEstimate:
    """Bytes a model takes on the host: its tensors, the copies read from the file, and
    activations for ``images`` images at once."""

    weights: int
    stored: int
    activations: int
    img_size: int
    images: int = EXAMPLE_BATCH

    @property
    def total(self) -> int:
        return self.weights + self.stored + self.activations


def _token_grid(model: torch.nn.Module, img_size: int) -> tuple[int, int]:
    """(tokens, width) the backbone gives one image, traced on the meta device."""
    try:
        with torch.no_grad():
            tokens, _ = model.tokens(torch.empty(1, 3, img_size, img_size, device="meta"))
        return int(tokens.shape[1]), int(tokens.shape[2])
    except Exception:  # a backbone meta tensors cannot trace: assume stride 8
        return max(1, (img_size // 8) ** 2), int(model.feature_dim)


def head_activation_bytes(config: Any, tokens: int, width: int, batch: int) -> int:
    """fp32 bytes the head's largest intermediates take for ``batch`` images: the graphs
    (num_scenes and batch C x C matrices), the label attention (C x tokens per image), the
    propagation states (C x width per step) and the encoder over the tokens. Attention runs
    through scaled_dot_product_attention, which keeps no tokens x tokens matrix."""
    c, d = config.num_classes, width
    if config.head == "linear":
        return 4 * batch * (tokens * d + 2 * c)
    per_image = tokens * (3 * d + config.encoder_ffn + config.attention_dim) \
        + c * (3 * tokens + (4 * config.num_steps + 12) * d + 2 * c)
    shared = 3 * config.num_scenes * c * c + c * config.attention_dim
    return 4 * (batch * per_image + shared) + LABEL_CHUNK_BYTES


def estimate_memory(model: torch.nn.Module, config: Any,
                    header: Mapping[str, tuple[tuple[int, ...], str]],
                    images: int = EXAMPLE_BATCH) -> MemoryEstimate:
    """What loading and running ``model`` (built on the meta device) takes on the host: its
    parameters and buffers, the tensors read from the file before they are copied in, and
    activations for ``images`` images in one pass (backbone: BACKBONE_BYTES_PER_PIXEL per
    pixel; head: head_activation_bytes). A rough, stated estimate, to stop hopeless loads
    early."""
    weights = sum(t.numel() * t.element_size()
                  for t in (*model.parameters(), *model.buffers()))
    sizes = {**FLOAT_DTYPES, **INT_DTYPES, **BOOL_DTYPES}  # bytes per element
    stored = sum(math.prod(shape) * sizes.get(dtype, 8) for shape, dtype in header.values())
    tokens, width = _token_grid(model, config.img_size)
    activations = images * config.img_size ** 2 * BACKBONE_BYTES_PER_PIXEL \
        + head_activation_bytes(config, tokens, width, images)
    return MemoryEstimate(weights, stored, activations, config.img_size, images)


def _available_memory() -> tuple[float, str]:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024.0, "available (MemAvailable)"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), \
            "of physical memory"
    except (AttributeError, OSError, ValueError):
        return math.inf, "available"


def _address_space_left() -> float | None:
    """What an address-space limit (ulimit -v) leaves this process, or None without one."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status", encoding="ascii") as fh:
            used = next(int(line.split()[1]) * 1024 for line in fh
                        if line.startswith("VmSize:"))
        return float(soft - used)
    except (ImportError, OSError, ValueError, StopIteration):
        return None


def memory_limit() -> tuple[float, str]:
    """Bytes a model may need, and where the number comes from: SALGL_MEMORY_LIMIT_GB (in
    GB) when set; else the memory available now (MemAvailable in /proc/meminfo, physical
    memory where there is none), lowered to what an address-space limit leaves."""
    setting = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if setting:
        try:
            gb = float(setting)
        except ValueError:
            gb = math.nan
        if not math.isfinite(gb) or gb <= 0:
            raise SalglError(f"{MEMORY_LIMIT_ENV}: '{printable(setting, 40)}' is not a "
                             "positive number of GB")
        return gb * 1e9, f"allowed by {MEMORY_LIMIT_ENV}"
    limit, source = _available_memory()
    left = _address_space_left()
    if left is not None and left < limit:
        return max(left, 0.0), "left under this process's address-space limit (ulimit -v)"
    return limit, source


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def check_memory(path: Path, estimate: MemoryEstimate) -> None:
    """Refuse, with the estimate, a model that would not fit: better than an allocator
    traceback (or the kernel's OOM killer) after minutes of building."""
    limit, source = memory_limit()
    if estimate.total > limit:
        raise SalglError(
            f"{path}: building this model needs about {_size(estimate.total)} "
            f"({_size(estimate.weights)} of weights, {_size(estimate.stored)} read from the "
            f"file, {_size(estimate.activations)} of activations for {estimate.images} images "
            f"of {estimate.img_size} px), more than the {_size(limit)} {source}")
