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
        self._source: nn.Module | None = None
        self._averaged: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        self._copied: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _pair(self, model: nn.Module) -> None:
        """Match our tensors with the model's once: state-dict entries alias the live
        parameters and buffers (loading copies into them in place), so the pairing stays
        valid and the per-step update builds no state dicts."""
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
        self._averaged = ([a for a, _ in averaged], [b for _, b in averaged])
        self._copied = copied
        self._source = model

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if model is not self._source:
            self._pair(model)
        mine, theirs = self._averaged
        if mine:
            torch._foreach_lerp_(mine, theirs, 1.0 - self.decay)
        for own, source in self._copied:
            own.copy_(source)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
