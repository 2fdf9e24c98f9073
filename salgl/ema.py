"""Exponential moving average of all weights and buffers (method.md), with the
co-occurrence memory either averaged (``comat_ema``) or copied."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma:
    """EMA copy of a model, updated after every optimiser step; evaluation uses ``module``."""

    def __init__(self, model: nn.Module, decay: float, average_cooccurrence: bool = True):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.average_cooccurrence = average_cooccurrence

    def _pairs(self, model: nn.Module):
        own = self.module.state_dict()
        other = model.state_dict()
        averaged, copied = [], []
        for name, value in own.items():
            source = other[name]
            if not value.is_floating_point() or (
                    name.endswith("cooccurrence") and not self.average_cooccurrence):
                copied.append((value, source))
            else:
                averaged.append((value, source))
        return averaged, copied

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        averaged, copied = self._pairs(model)
        if averaged:
            mine = [a for a, _ in averaged]
            theirs = [b.to(a.dtype) for a, b in averaged]
            torch._foreach_lerp_(mine, theirs, 1.0 - self.decay)
        for mine, theirs in copied:
            mine.copy_(theirs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
