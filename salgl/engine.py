"""One epoch of training and the scoring of a split, as free functions: what the training
recipe (salgl.train) repeats every epoch, without any of its bookkeeping."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from salgl.distributed import DistInfo, broadcast_state, gather_predictions
from salgl.inference import predict_scores


def train_one_epoch(model: nn.Module, criterion: nn.Module, loader: DataLoader,
                    optimizer: torch.optim.Optimizer, scheduler, device: torch.device, *,
                    scaler: torch.amp.GradScaler, forward_model: nn.Module | None = None,
                    ema=None, amp_dtype: torch.dtype | None = None, step_in_backward=None,
                    masked_targets: bool = False, desc: str = "train", progress: bool = False
                    ) -> dict[str, float]:
    """Train ``model`` for one pass over ``loader``; the mean of each loss term.

    ``forward_model`` is what the batches go through (the DDP or compiled wrapper of
    ``model``, default ``model`` itself); ``ema`` follows ``model`` after every step. With
    ``masked_targets`` a target of -1 marks an unscored pair: no loss, no memory count.
    With ``step_in_backward`` (salgl.step_in_backward) each weight steps inside backward.
    """
    from tqdm import tqdm

    forward_model = forward_model if forward_model is not None else model
    model.train()
    sums: dict[str, torch.Tensor] = {}
    for images, targets, _ in tqdm(loader, desc=desc, disable=not progress, leave=False):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        valid = None
        if masked_targets:
            valid = targets >= 0
            targets = targets.clamp(min=0)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outputs = forward_model(images, targets)
            losses = criterion(outputs, targets, valid)
        if step_in_backward is not None:
            losses["total"].backward()        # every weight is stepped inside backward
        else:
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["total"]).backward()
            scaler.step(optimizer)
            scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update(model)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0) + v.detach()
    n = max(len(loader), 1)
    return {k: float(v) / n for k, v in sums.items()}


def score_split(model: nn.Module, loader: DataLoader, total: int, device: torch.device,
                dist: DistInfo, amp_dtype: torch.dtype | None = None, progress: bool = False,
                desc: str = "score") -> np.ndarray:
    """Scores (N, C) of ``model`` on a split, in dataset order. With several processes, rank
    0's weights are sent to all, each scores its shard and every process gets them all."""
    if dist.enabled:
        broadcast_state(model)
    scores, _, indices = predict_scores(model, loader, device, amp_dtype, progress, desc)
    if dist.enabled:
        scores = gather_predictions(scores, indices, total, device)
    return scores.numpy()
