"""The plain-backbone baseline (ablation variant d): global average pooling and one linear
layer on the same backbone, trained with the same loss and recipe as SALGL.

It returns SALGL's outputs and is saved in SALGL's file format, so training, evaluation,
prediction, export and figures treat it like any model. It has one "scene" whose probability
is always 1 (the scene regularisers are then constants without gradient), and it counts the
training labels' co-occurrence into a one-scene memory M that it never reads, so that
`salgl info`, `salgl predict` and the figures describe its training labels as for SALGL.
"""

from __future__ import annotations

import torch
from torch import nn

from salgl.model.base import BackboneModel, SalglConfig


class PlainClassifier(BackboneModel):
    """Backbone -> mean over tokens -> Linear(D, C)."""

    def __init__(self, config: SalglConfig, label_embeddings: torch.Tensor | None = None, *,
                 pretrained: bool = False, pretrained_path: str | None = None):
        if config.num_scenes != 1 or config.num_steps != 0:
            raise ValueError("the linear head has one scene and no propagation steps "
                             f"(got num_scenes={config.num_scenes}, "
                             f"num_steps={config.num_steps})")
        super().__init__(config, pretrained=pretrained, pretrained_path=pretrained_path)
        c = config.num_classes
        self.classifier = nn.Linear(self.feature_dim, c)
        self.register_buffer("cooccurrence", torch.zeros(1, c, c))

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        tokens, _ = self.tokens(images)
        logits = self.classifier(tokens.mean(dim=1))
        scene_logits = logits.new_zeros(logits.shape[0], 1)
        scene_probs = torch.ones(logits.shape[0], 1, dtype=self.cooccurrence.dtype,
                                 device=logits.device)
        if self.training and targets is not None:
            with torch.no_grad():
                self._update_cooccurrence(scene_probs, targets)
        return {"logits": logits, "scene_logits": scene_logits, "scene_probs": scene_probs}
