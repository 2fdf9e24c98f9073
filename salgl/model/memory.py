"""The label co-occurrence memory M (method.md steps 4-6), one (C, C) matrix per scene.

M[k, i, j] counts how often labels i and j occurred together in training images assigned to
scene k (hard mode: the argmax scene; soft mode: weighted by the scene probability). The
models keep it in a buffer named ``cooccurrence`` (the key of our model files and of the
released checkpoints); this module holds what is computed from and into it. The fast forms
here are tested against the per-image loops of salgl.model.reference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

EPS = 1e-8

# Gathers (scene_probs, targets) across processes so every rank updates M identically.
GatherFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def conditional_probabilities(cooccurrence: torch.Tensor, ignore_self: bool = False,
                              normalize: bool = True) -> torch.Tensor:
    """P[k, i, j] = M[k, j, i] / (M[k, i, i] + eps): P(label j | label i, scene k).

    Tested against salgl.model.reference.conditional_probabilities (a loop over rows)."""
    diag = cooccurrence.diagonal(dim1=1, dim2=2)
    probs = cooccurrence.transpose(1, 2) / (diag[..., :, None] + EPS)
    if ignore_self:
        eye = torch.eye(probs.shape[-1], device=probs.device, dtype=probs.dtype)
        probs = probs * (1 - eye)
    if normalize:
        probs = probs / (probs.sum(-1, keepdim=True) + EPS)
    return probs


def cooccurrence_increment(scene_probs: torch.Tensor, targets: torch.Tensor, num_scenes: int,
                           soft: bool) -> torch.Tensor:
    """sum_b w_{b,k} y_b y_b^T as one batched op; w is one-hot argmax (hard) or p (soft).

    Tested against salgl.model.reference.update_cooccurrence (a loop over images)."""
    if soft:
        weights = scene_probs
    else:
        weights = nn.functional.one_hot(scene_probs.argmax(1), num_scenes).to(targets.dtype)
    return torch.einsum("bk,bi,bj->kij", weights, targets, targets)


def update_cooccurrence(cooccurrence: torch.Tensor, scene_probs: torch.Tensor,
                        targets: torch.Tensor, num_scenes: int, soft: bool,
                        gather: GatherFn | None = None) -> torch.Tensor:
    """Add a training batch's label outer products to the memory buffer, in place, and return
    the M this forward pass uses.

    Everything runs in the buffer's dtype, so counts stay exact under reduced precision.
    ``gather`` (several processes) collects every rank's batch first, so that all ranks hold
    the same M. Hard mode carries no gradient; in soft mode the returned M keeps the batch's
    gradient to ``scene_probs`` while the stored buffer is detached.
    Tested against salgl.model.reference.update_cooccurrence (a loop over images)."""
    dtype = cooccurrence.dtype
    probs, labels = scene_probs.to(dtype), targets.to(dtype)
    if gather is not None:
        probs, labels = gather(probs, labels)
    if not soft:
        probs = probs.detach()
    increment = cooccurrence_increment(probs, labels, num_scenes, soft)
    updated = cooccurrence.detach() + increment
    cooccurrence.copy_(updated.detach())
    return updated
