"""Exponential moving average of all weights and buffers (method.md), with the
co-occurrence memory either averaged (``comat_ema``) or copied.

With a warm-up, step t uses the decay min(decay, (1 + t) / (10 + t)), as TensorFlow's
ExponentialMovingAverage does with ``num_updates``: early steps follow the model closely, so a
short run (a small own dataset, a smoke test) never selects an average that is still mostly
its initial weights. Without it (the paper presets: the authors' EMA exactly), every step
uses ``decay``; 0.9997 then keeps 74% of the initial weights after 1,000 steps.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEma:
    """EMA copy of a model, updated after every optimiser step; evaluation uses ``module``."""

    def __init__(self, model: nn.Module, decay: float, average_cooccurrence: bool = True,
                 warmup: bool = False):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.updates = 0  # steps averaged so far: the warm-up's clock, kept by resume
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
            torch._foreach_lerp_(mine, theirs, 1.0 - step_decay(self.decay, self.warmup,
                                                                 self.updates))
        for own, source in self._copied:
            own.copy_(source)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**self.module.state_dict(), UPDATES_KEY: torch.tensor([self.updates])}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        updates = state.pop(UPDATES_KEY, None)
        self.updates = int(updates.item()) if updates is not None else 0
        self.module.load_state_dict(state)


UPDATES_KEY = "_ema_updates"  # in resume state, beside the averaged model's tensors


def step_decay(decay: float, warmup: bool, step: int) -> float:
    """The decay of update number ``step`` (0-based)."""
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


def initial_share(decay: float, warmup: bool, steps: int) -> float:
    """How much of its initial weights the average still holds after ``steps`` updates."""
    if not warmup:
        return decay ** steps
    return math.exp(sum(math.log(step_decay(decay, True, t)) for t in range(steps)))
