"""Epoch selection and early stopping: keep the EMA weights of the epoch with the best mAP on
the selection split (validation by default; test is the paper's protocol), and stop when
``patience`` epochs in a row bring no better one."""

from __future__ import annotations

import torch
from torch import nn


class Selection:
    """The best epoch so far, its weights, and the epochs since it."""

    def __init__(self, split: str):
        self.split = split
        self.best_map, self.best_epoch, self.stale = -1.0, -1, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[float] = []  # every epoch's selection mAP, for convergence checks

    def update(self, epoch: int, mAP: float, weights: nn.Module) -> bool:
        """Record ``epoch``'s selection mAP; keep a copy of ``weights`` when it is the best."""
        self.history.append(float(mAP))
        if mAP > self.best_map:
            self.best_map, self.best_epoch, self.stale = mAP, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in weights.state_dict().items()}
            return True
        self.stale += 1
        return False

    def exhausted(self, patience: int) -> bool:
        """True once ``patience`` epochs in a row brought no better mAP."""
        return self.stale >= patience

    def restore(self, module: nn.Module) -> None:
        """Load the selected epoch's weights into ``module`` (nothing before any epoch)."""
        if self.best_state is not None:
            module.load_state_dict(self.best_state)

    def model_metadata(self) -> dict:
        """What the model file says about how its weights were chosen."""
        return {"selected_on": self.split, "selected_epoch": self.best_epoch + 1,
                "selection_mAP": self.best_map}

    def counters(self) -> dict:
        """The resume state's view (weights travel separately as tensors)."""
        return {"best_map": self.best_map, "best_epoch": self.best_epoch, "stale": self.stale,
                "history": list(self.history)}

    def load_counters(self, meta: dict, best_state: dict[str, torch.Tensor] | None) -> None:
        self.best_map, self.best_epoch = meta["best_map"], meta["best_epoch"]
        self.stale = meta["stale"]
        self.history = [float(v) for v in meta.get("history", [])]  # older states: none
        self.best_state = best_state
