"""The SALGL model of method.md: backbone tokens -> scene -> scene-conditional graph -> labels.

Its parts: the shared backbone (salgl.model.base), the co-occurrence memory
(salgl.model.memory), the encoder, attention and classifier layers (salgl.model.layers) and
the gated propagation (salgl.model.propagation). salgl.model.reference writes the same method
naively, for reading; salgl.model.create_model picks this class for ``head: salgl``.
"""

from __future__ import annotations

import torch
from torch import nn

from salgl.model.base import BackboneModel, SalglConfig
from salgl.model.layers import (
    ContextEncoderLayer,
    LabelAttention,
    PerLabelLinear,
    sine_position_code,
)
from salgl.model.memory import conditional_probabilities
from salgl.model.propagation import GatedPropagation


class SALGL(BackboneModel):
    """Scene-Aware Label Graph Learning (Zhu et al., ICCV 2023)."""

    def __init__(self, config: SalglConfig, label_embeddings: torch.Tensor | None = None, *,
                 pretrained: bool = False, pretrained_path: str | None = None):
        super().__init__(config, pretrained=pretrained, pretrained_path=pretrained_path)
        dim = self.feature_dim
        self.encoder = ContextEncoderLayer(dim, config.encoder_heads, config.encoder_ffn,
                                           config.dropout)
        self.scene_classifier = nn.Linear(dim, config.num_scenes, bias=False)
        c = config.num_classes
        if config.embed_dim is None:
            self.label_embeddings = nn.Parameter(torch.randn(c, dim))
        else:
            if label_embeddings is None:
                label_embeddings = torch.zeros(c, config.embed_dim)
            if tuple(label_embeddings.shape) != (c, config.embed_dim):
                raise ValueError(f"label embeddings have shape {tuple(label_embeddings.shape)}, "
                                 f"expected {(c, config.embed_dim)}")
            self.register_buffer("label_embeddings", label_embeddings.float().clone())
        label_dim = dim if config.embed_dim is None else config.embed_dim
        self.attention = LabelAttention(dim, label_dim, config.attention_dim)
        self.propagation = GatedPropagation(dim, config.num_steps, config.outmess)
        self.fusion = nn.Linear(2 * dim if config.num_steps > 0 else dim, dim)
        self.classifier = PerLabelLinear(c, dim)
        self.register_buffer("cooccurrence", torch.zeros(config.num_scenes, c, c))

    def _position_code(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor | None:
        if not self.config.pos_encoding:
            return None
        prefix = tokens.shape[1] - grid[0] * grid[1]
        code = sine_position_code(grid[0], grid[1], tokens.shape[-1], prefix, device=tokens.device)
        return code.to(tokens.dtype)[None]

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        tokens, grid = self.tokens(images)
        tokens = self.encoder(tokens, self._position_code(tokens, grid))
        scene_logits = self.scene_classifier(tokens.mean(dim=1))
        scene_probs = scene_logits.to(self.cooccurrence.dtype).softmax(dim=-1)

        with torch.autocast(device_type=images.device.type, enabled=False):
            memory = self.cooccurrence
            if self.training and targets is not None:
                memory = self._update_cooccurrence(scene_probs, targets)
            probs = conditional_probabilities(memory, self.config.ignore_self,
                                              self.config.normalize)
            if self.config.soft:
                graphs = torch.einsum("bk,kij->bij", scene_probs, probs)
            else:
                graphs = probs[scene_probs.argmax(dim=1)]

        visual, alpha = self.attention(tokens, self.label_embeddings.to(tokens.dtype))
        if self.config.num_steps > 0:
            propagated = self.propagation(visual, graphs)
            fused = torch.tanh(self.fusion(torch.cat((visual, propagated), dim=-1)))
        else:
            fused = torch.tanh(self.fusion(visual))
        logits = self.classifier(fused)
        return {"logits": logits, "scene_logits": scene_logits, "scene_probs": scene_probs,
                "attention": alpha, "graphs": graphs}

