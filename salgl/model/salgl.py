"""The SALGL model of method.md: backbone tokens -> scene -> scene-conditional graph -> labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import partial

import torch
from torch import nn

from salgl.model.backbone import backbone_features, create_backbone, feature_tokens
from salgl.model.layers import (
    ContextEncoderLayer,
    LabelAttention,
    PerLabelLinear,
    sine_position_code,
)
from salgl.model.propagation import GatedPropagation
from salgl.model.recompute import check_sequential, split_point

EPS = 1e-8

# Gathers (scene_probs, targets) across processes so every rank updates M identically.
GatherFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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


def conditional_probabilities(cooccurrence: torch.Tensor, ignore_self: bool = False,
                              normalize: bool = True) -> torch.Tensor:
    """P[k, i, j] = M[k, j, i] / (M[k, i, i] + eps): P(label j | label i, scene k)."""
    diag = cooccurrence.diagonal(dim1=1, dim2=2)
    probs = cooccurrence.transpose(1, 2) / (diag[..., :, None] + EPS)
    if ignore_self:
        eye = torch.eye(probs.shape[-1], device=probs.device, dtype=probs.dtype)
        probs = probs * (1 - eye)
    if normalize:
        probs = probs / (probs.sum(-1, keepdim=True) + EPS)
    return probs


def cooccurrence_increment(scene_probs: torch.Tensor, targets: torch.Tensor, num_scenes: int,
                           soft: bool) -> torch.Tensor:
    """sum_b w_{b,k} y_b y_b^T as one batched op; w is one-hot argmax (hard) or p (soft)."""
    if soft:
        weights = scene_probs
    else:
        weights = nn.functional.one_hot(scene_probs.argmax(1), num_scenes).to(targets.dtype)
    return torch.einsum("bk,bi,bj->kij", weights, targets, targets)


class BackboneModel(nn.Module):
    """What SALGL and the plain-backbone baseline share: the timm backbone, its memory layout
    and recompute switches, and the label co-occurrence memory M (one matrix per scene)."""

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
        dtype = self.cooccurrence.dtype
        probs, labels = scene_probs.to(dtype), targets.to(dtype)
        if self.gather is not None:
            probs, labels = self.gather(probs, labels)
        if not self.config.soft:
            probs = probs.detach()
        increment = cooccurrence_increment(probs, labels, self.config.num_scenes, self.config.soft)
        updated = self.cooccurrence.detach() + increment
        self.cooccurrence.copy_(updated.detach())
        return updated


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


HEADS = ("salgl", "linear")


def create_model(config: SalglConfig, label_embeddings: torch.Tensor | None = None, *,
                 pretrained: bool = False, pretrained_path: str | None = None
                 ) -> BackboneModel:
    """The model a config describes: SALGL, or the plain-backbone baseline (head: linear)."""
    if config.head == "linear":
        from salgl.model.plain import PlainClassifier

        return PlainClassifier(config, label_embeddings, pretrained=pretrained,
                               pretrained_path=pretrained_path)
    if config.head != "salgl":
        raise ValueError(f"unknown head {config.head!r} (expected one of {', '.join(HEADS)})")
    return SALGL(config, label_embeddings, pretrained=pretrained,
                 pretrained_path=pretrained_path)
