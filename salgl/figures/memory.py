"""The learned scenes' co-occurrence memory as numbers the scene figures draw."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from salgl.errors import SalglError
from salgl.model.memory import conditional_probabilities


def as_cooccurrence(cooccurrence: Any, num_labels: int | None = None) -> np.ndarray:
    """A float64 (S, C, C) array from a numpy array or a torch tensor, checked."""
    if hasattr(cooccurrence, "detach"):
        cooccurrence = cooccurrence.detach().cpu().float().numpy()
    memory = np.asarray(cooccurrence, dtype=np.float64)
    if memory.ndim != 3 or memory.shape[1] != memory.shape[2]:
        raise SalglError(f"co-occurrence memory must be (scenes, C, C), got {memory.shape}")
    if num_labels is not None and memory.shape[1] != num_labels:
        raise SalglError(f"co-occurrence memory has {memory.shape[1]} labels, "
                         f"expected {num_labels}")
    return memory


def conditional_matrix(cooccurrence: Any) -> np.ndarray:
    """P[k, i, j] = M[k, j, i] / (M[k, i, i] + eps) = P(j | i, scene k), as a float64 array.

    The model's own formula (salgl.model.memory.conditional_probabilities), computed in
    float64, with self-loops kept and rows not normalised: the figures show the raw
    conditional frequencies, while the model (by default) rescales each row to sum to 1
    before propagating over it."""
    memory = torch.from_numpy(as_cooccurrence(cooccurrence).copy())
    return conditional_probabilities(memory, ignore_self=False, normalize=False).numpy()


def scene_label_shares(cooccurrence: Any) -> np.ndarray:
    """(S, C): the share of each label's occurrences that fell in each scene (0 if never seen)."""
    diag = np.diagonal(as_cooccurrence(cooccurrence), axis1=1, axis2=2).clip(min=0)
    total = diag.sum(0, keepdims=True)
    return np.divide(diag, total, out=np.zeros_like(diag), where=total > 0)


def occurrences(memory: np.ndarray, k: int) -> float:
    """Scene k's memory total: label occurrences counted over every training step."""
    return float(np.trace(memory[k]))
