"""What every model head shares: its config and the backbone it stands on."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import partial
from typing import Any

import torch
from torch import nn

from salgl.errors import stored_value
from salgl.model.backbone import backbone_features, create_backbone, feature_tokens
from salgl.model.memory import GatherFn, update_cooccurrence
from salgl.model.recompute import check_sequential, split_point

# Bounds on the sizes a model file's config may ask for. They are checked before anything is
# built, because these numbers decide how much memory building takes (load_model also
# estimates it); each is a sanity limit well beyond any real model, not a tuning range, and
# includes everything training accepts (salgl.config.TrainConfig).
# key: (lowest, highest, why)
SIZE_BOUNDS: dict[str, tuple[int, int, str]] = {
    "num_classes": (1, 100_000, "real label sets have 6 to about 20000 labels"),
    "img_size": (16, 2048, "training accepts 16 to 2048 px; beyond that one image's "
                 "activations alone take gigabytes"),
    "num_scenes": (1, 1024, "each scene holds a num_classes x num_classes matrix; "
                   "training accepts up to 256"),
    "num_steps": (0, 64, "propagation steps; the method uses 3 and training accepts 16"),
    "attention_dim": (1, 65_536, "an attention_dim x attention_dim layer; 64 times the "
                      "default width"),
    "encoder_heads": (1, 1024, "heads must divide the backbone's feature width"),
    "encoder_ffn": (1, 65_536, "32 times the default feed-forward width"),
    "embed_dim": (1, 65_536, "label vectors: GloVe has 300, training makes up to 4096"),
    "backbone_stage": (0, 16, "timm feature stages are numbered 0 to 5 at most"),
}
OUTPUT_STRIDES = (8, 16, 32)  # what timm backbones accept (as TrainConfig.output_stride)
HEAD_NAMES = ("salgl", "linear")  # the keys of salgl.model.HEADS (a test keeps them equal)
BOOL_FIELDS = ("pos_encoding", "outmess", "normalize", "ignore_self", "soft")
REQUIRED_KEYS = ("backbone", "num_classes", "img_size")
MAX_BACKBONE_NAME = 200  # timm names are under 60 characters


def _checked_int(key: str, value: Any) -> int:
    """An int within SIZE_BOUNDS[key]; bools and floats are refused (JSON 1.5, true)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}: expected an integer, got {type(value).__name__}")
    low, high, why = SIZE_BOUNDS[key]
    if not low <= value <= high:
        raise ValueError(f"{key}: {stored_value(value)} is outside {low} to {high} ({why})")
    return value


def _check_config_values(data: dict) -> None:
    """Types and bounds of every key of a stored config, one ValueError naming the key."""
    backbone = data["backbone"]
    if not isinstance(backbone, str) or not backbone or len(backbone) > MAX_BACKBONE_NAME \
            or not backbone.isprintable():
        raise ValueError(f"backbone: expected a timm model name, got {stored_value(backbone)}")
    for key in SIZE_BOUNDS:
        if key in data and not (data[key] is None and key in ("embed_dim", "backbone_stage")):
            _checked_int(key, data[key])
    stride = data.get("output_stride")
    if stride is not None and (type(stride) is not int or stride not in OUTPUT_STRIDES):
        raise ValueError(f"output_stride: expected null or one of {OUTPUT_STRIDES}, got "
                         f"{stored_value(stride)}")
    dropout = data.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not math.isfinite(dropout) or not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout: expected a number in [0, 1], got {stored_value(dropout)}")
    for key in BOOL_FIELDS:
        if key in data and not isinstance(data[key], bool):
            raise ValueError(f"{key}: expected true or false, got {stored_value(data[key])}")
    head = data.get("head", "salgl")
    if not isinstance(head, str) or head not in HEAD_NAMES:
        raise ValueError(f"head: expected one of {', '.join(HEAD_NAMES)}, got {stored_value(head)}")


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
    def from_dict(cls, data: Any) -> SalglConfig:
        """The config stored in a model file, every key's type and bounds checked first
        (ValueError naming the key): these numbers decide what gets allocated."""
        if not isinstance(data, dict):
            raise ValueError(f"expected an object of config keys, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError("unknown model config keys "
                             + ", ".join(stored_value(key) for key in unknown[:3]))
        missing = [key for key in REQUIRED_KEYS if key not in data]
        if missing:
            raise ValueError(f"{missing[0]}: missing")
        _check_config_values(data)
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
