"""Recompute the backbone's first stages in backward instead of storing their activations.

Early convolution stages hold much of a CNN's activation memory for a smaller share of its
compute (ResNet-50 at 224 px, batch 8: the stem and layer1 store 317 MB, 45% of the total,
and take 0.26 s of forward on 2 CPU cores). Running them under non-reentrant activation
checkpointing stores only their input and recomputes them when backward reaches them.
BatchNorm running statistics are frozen during the recomputation, so they are updated once
per step, as without it.

This needs a backbone whose features are its top-level modules applied in order (the
ResNet family, plain CNNs); ``check_sequential`` verifies that on a small input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from salgl.errors import SalglError

HEAD_MODULES = {"global_pool", "fc", "head", "head_drop", "fc_norm", "classifier", "head_hidden"}


def feature_modules(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """The backbone's top-level modules that compute its features, in definition order."""
    return [(n, m) for n, m in backbone.named_children() if n not in HEAD_MODULES]


def stage_names(backbone: nn.Module) -> list[str]:
    """timm's feature stages (all of them, also for a features_only wrapper)."""
    info = getattr(backbone, "feature_info", None)
    dicts = getattr(info, "info", info)
    if not dicts:
        return []
    return [d["module"] for d in dicts]


def split_point(backbone: nn.Module, stages: int, key: str) -> int:
    """How many feature modules make up the first ``stages`` stages."""
    names = stage_names(backbone)
    modules = [n for n, _ in feature_modules(backbone)]
    if stages > len(names):
        raise SalglError(f"{key}: {stages} stages asked, the backbone has {len(names)}")
    last = names[stages - 1]
    hits = [i for i, n in enumerate(modules) if n == last or n.startswith(last + "_")]
    if not hits:
        raise SalglError(f"{key}: stage {stages} ({last}) is not a top-level module of the "
                         "backbone; recomputation supports ResNet-style backbones only")
    return hits[-1] + 1


def run_modules(modules: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for module in modules:
        x = module(x)
    return x


@contextlib.contextmanager
def frozen_running_stats(modules: list[nn.Module]) -> Iterator[None]:
    """BatchNorm layers keep their running statistics (momentum 0, step count restored)."""
    norms = [m for top in modules for m in top.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, None if m.num_batches_tracked is None
              else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


def forward_recomputing(backbone: nn.Module, images: torch.Tensor, cut: int) -> torch.Tensor:
    """Features with the first ``cut`` feature modules checkpointed as one segment."""
    modules = [m for _, m in feature_modules(backbone)]
    head, tail = modules[:cut], modules[cut:]

    def contexts():  # (first forward, recomputation)
        return contextlib.nullcontext(), frozen_running_stats(head)

    x = checkpoint(run_modules, head, images, use_reentrant=False, context_fn=contexts)
    return run_modules(tail, x)


@torch.no_grad()
def check_sequential(backbone: nn.Module, reference_forward, key: str, size: int = 64) -> None:
    """Refuse backbones whose forward is not their feature modules applied in order."""
    was_training = backbone.training
    backbone.eval()
    try:
        first = next(backbone.parameters())
        probe = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        probe = probe.to(first.device, first.dtype)
        modules = [m for _, m in feature_modules(backbone)]
        try:
            same = torch.equal(run_modules(modules, probe), reference_forward(probe))
        except Exception:  # any mismatch of structure shows up as a failure here
            same = False
    finally:
        backbone.train(was_training)
    if not same:
        raise SalglError(f"{key}: this backbone does not apply its modules in order, so its "
                         "stages cannot be recomputed; set it to 0")
