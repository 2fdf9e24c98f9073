"""From a model's outputs to what people read: label scores and scene probabilities.

The one place that turns the training outputs dict into sigmoid scores and scene
probabilities, used by training (selection and calibration), evaluation, ``salgl predict``
and the ONNX export, so all four score images the same way.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from salgl.data.dataset import build_transform


def scores_and_scenes(outputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid label scores (B, C) and scene probabilities (B, S), in fp32."""
    return torch.sigmoid(outputs["logits"].float()), outputs["scene_probs"].float()


class ScoresAndScenes(nn.Module):
    """A model whose forward returns (scores, scene_probs): the graph ONNX export traces."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return scores_and_scenes(self.model(images))


def transform_for(info) -> object:
    """The evaluation transform a model file asks for: its input size and normalisation."""
    kind = info.normalization.get("kind", "imagenet")
    return build_transform(info.config.img_size, kind, train=False)


@torch.no_grad()
def predict_scores(model: nn.Module, loader: DataLoader, device: torch.device,
                   dtype: torch.dtype | None = None, progress: bool = False,
                   desc: str = "predict"
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores (N, C), scene probabilities (N, S) and each row's dataset index, on the CPU,
    for a loader of (images, targets, index); ``dtype`` autocasts (None: fp32)."""
    from tqdm import tqdm

    model.eval()
    scores, scenes, indices = [], [], []
    for images, _, index in tqdm(loader, desc=desc, disable=not progress, leave=False):
        images = images.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            outputs = model(images)
        batch_scores, batch_scenes = scores_and_scenes(outputs)
        scores.append(batch_scores)
        scenes.append(batch_scenes)
        indices.append(torch.as_tensor(index, device=images.device))
    return torch.cat(scores).cpu(), torch.cat(scenes).cpu(), torch.cat(indices).cpu()
