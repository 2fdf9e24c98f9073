"""What every model head shares: its config and the backbone it stands on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import partial

import torch
from torch import nn

from salgl.model.backbone import backbone_features, create_backbone, feature_tokens
from salgl.model.memory import GatherFn, update_cooccurrence
from salgl.model.recompute import check_sequential, split_point


@dataclass(frozen=True)
class SalglConfig:
    """Everything needed to rebuild the architecture; stored inside our weight files."""

    backbone: str
    num_classes: int
    img_size: int
    embed_dim: int | None = None  # None: trainable random label embeddings of width D
    num_scenes: int = 4
    num_steps: int = 3
    attention_dim: int = 1024
    encoder_heads: int = 8
    encoder_ffn: int = 2048
    dropout: float = 0.1
    output_stride: int | None = None
    backbone_stage: int | None = None
    pos_encoding: bool = False
    outmess: bool = True
    normalize: bool = True
    ignore_self: bool = False
    soft: bool = False
    head: str = "salgl"  # "linear": the plain-backbone baseline (salgl.model.plain)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SalglConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}")
        return cls(**data)


class BackboneModel(nn.Module):
    """What SALGL and the plain-backbone baseline share: the timm backbone, its memory layout
    and recompute switches, and the update of the label co-occurrence memory M (one matrix
    per scene, salgl.model.memory) that each subclass registers as its ``cooccurrence``
    buffer."""

    cooccurrence: torch.Tensor

    def __init__(self, config: SalglConfig, *, pretrained: bool = False,
                 pretrained_path: str | None = None):
        super().__init__()
        self.config = config
        self.backbone = create_backbone(config.backbone, img_size=config.img_size,
                                        output_stride=config.output_stride,
                                        stage=config.backbone_stage,
                                        pretrained=pretrained, pretrained_path=pretrained_path)
        self.feature_dim = self.backbone.num_features
        self.gather: GatherFn | None = None
        self.channels_last = False
        self.recompute_cut = 0

    def set_channels_last(self, enabled: bool = True) -> BackboneModel:
        """Run the backbone in NHWC memory: faster convolutions on CPU (oneDNN, measured 13%
        on ResNet-50) and on CUDA tensor cores. The same function; inputs are converted."""
        self.backbone.to(memory_format=torch.channels_last if enabled
                         else torch.contiguous_format)
        self.channels_last = enabled
        return self

    def set_recompute(self, stages: int, key: str = "recompute_stages") -> BackboneModel:
        """Recompute the backbone's first ``stages`` timm stages in backward (training only):
        less activation memory for some extra compute; the same numbers."""
        if stages <= 0:
            self.recompute_cut = 0
            return self
        cut = split_point(self.backbone, stages, key)
        check_sequential(self.backbone, partial(backbone_features, self.backbone), key)
        self.recompute_cut = cut
        return self

    def tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Backbone tokens (B, N, D), in the chosen memory layout, recomputing in training."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        cut = self.recompute_cut if self.training and torch.is_grad_enabled() else 0
        return feature_tokens(self.backbone, images, cut)

    def _update_cooccurrence(self, scene_probs: torch.Tensor, targets: torch.Tensor
                             ) -> torch.Tensor:
        """Add this batch's label outer products to M (training only); return the M to use."""
        return update_cooccurrence(self.cooccurrence, scene_probs, targets,
                                   self.config.num_scenes, self.config.soft, self.gather)
