"""SALGL's objective: asymmetric loss plus the two scene-entropy regularisers (method.md)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def asymmetric_loss(logits: torch.Tensor, targets: torch.Tensor, gamma_neg: float = 2.0,
                    gamma_pos: float = 0.0, clip: float = 0.0, eps: float = 1e-5,
                    valid: torch.Tensor | None = None) -> torch.Tensor:
    """ASL on sigmoid probabilities, reduced as sum / B / C * 1000 (the released scale);
    pairs where ``valid`` is False (unscored annotations) add nothing."""
    targets = targets.to(torch.float32)
    q = torch.sigmoid(logits.float())
    q_neg = 1 - q
    if clip > 0:
        q_neg = (q_neg + clip).clamp(max=1)
    loss = targets * torch.log(q.clamp(min=eps)) + (1 - targets) * torch.log(q_neg.clamp(min=eps))
    if gamma_neg > 0 or gamma_pos > 0:
        with torch.no_grad():
            q_t = q * targets + q_neg * (1 - targets)
            gamma = gamma_pos * targets + gamma_neg * (1 - targets)
            weight = torch.pow(1 - q_t, gamma)
        loss = loss * weight
    if valid is not None:
        loss = loss * valid
    b, c = logits.shape
    return -loss.sum() / b / c * 1000


def entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs + 1e-7)).sum(-1)


def batch_scene_term(scene_probs: torch.Tensor) -> torch.Tensor:
    """(H(uniform) - H(mean_b p_b)) * 100: pushes the batch to use every scene."""
    return (math.log(scene_probs.shape[1]) - entropy(scene_probs.mean(0))) * 100


def scene_regularisers(scene_probs: torch.Tensor, batch_probs: torch.Tensor | None = None
                       ) -> dict[str, torch.Tensor]:
    """Sample term (each image to one scene) and batch term (the batch over all scenes).

    ``batch_probs``: the rows the batch term averages over when they are more than this
    process's ``scene_probs`` (every rank's, gathered); default ``scene_probs``.
    Written naively in salgl.model.reference.scene_regularisers."""
    return {"scene_sample": entropy(scene_probs).mean(),
            "scene_batch": batch_scene_term(scene_probs if batch_probs is None else batch_probs)}


class SalglCriterion(nn.Module):
    """Returns every loss term by name plus their weighted sum under ``total``."""

    def __init__(self, gamma_neg: float = 2.0, gamma_pos: float = 0.0, clip: float = 0.0,
                 scene_weight: float = 1.0, eps: float = 1e-5, *,
                 gather: Callable[[torch.Tensor], torch.Tensor] | None = None, world: int = 1):
        super().__init__()
        self.asl = dict(gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip, eps=eps)
        self.weights = {"asl": 1.0, "scene_sample": scene_weight, "scene_batch": scene_weight}
        # With several processes: gathers scene probabilities over ranks (the batch term is a
        # function of the whole global batch) and the number of ranks DDP averages over.
        self.gather = gather
        self.world = world

    def forward(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor,
                valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        terms = {"asl": asymmetric_loss(outputs["logits"], targets, **self.asl, valid=valid)}
        probs = outputs["scene_probs"]
        if self.gather is not None and self.world > 1:
            terms.update(scene_regularisers(probs, self.gather(probs)))
            batch = terms["scene_batch"]
            # Only this rank's rows carry gradient and DDP averages over ranks: scale the
            # gradient (not the value) by the world size so the sum equals one process's.
            terms["scene_batch"] = batch * self.world - batch.detach() * (self.world - 1)
        else:
            terms.update(scene_regularisers(probs))
        terms["total"] = sum(self.weights[k] * v for k, v in terms.items())
        return terms
