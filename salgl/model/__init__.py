"""SALGL's model package, one concept per module.

- ``base``: ``SalglConfig`` and ``BackboneModel``, the backbone every head stands on.
- ``memory``: the label co-occurrence memory M, its update and P(j | i) per scene.
- ``layers``: context encoder, label attention, per-label classifier, position code.
- ``propagation``: the gated graph propagation (GGNN) with its hand-written backward.
- ``salgl``: the SALGL model; ``plain``: the plain-backbone baseline (``head: linear``).
- ``reference``: the whole method written naively, for reading; the tests check the fast
  forms against it.
- ``backbone``, ``recompute``: timm backbones as tokens, recomputation in backward.

``create_model`` builds the class a config's ``head`` names (``HEADS``).
"""

from __future__ import annotations

import torch

from salgl.model.base import BackboneModel, SalglConfig
from salgl.model.memory import GatherFn
from salgl.model.plain import PlainClassifier
from salgl.model.salgl import SALGL

# head name (SalglConfig.head, ``model.head`` in model files) -> model class
HEADS: dict[str, type[BackboneModel]] = {"salgl": SALGL, "linear": PlainClassifier}


def create_model(config: SalglConfig, label_embeddings: torch.Tensor | None = None, *,
                 pretrained: bool = False, pretrained_path: str | None = None,
                 gather: GatherFn | None = None) -> BackboneModel:
    """The model a config describes: SALGL, or the plain-backbone baseline (head: linear).
    ``gather`` collects the global batch for the co-occurrence update when several
    processes train (salgl.distributed.gather_scene_batch)."""
    cls = HEADS.get(config.head)
    if cls is None:
        raise ValueError(f"unknown head {config.head!r} (expected one of {', '.join(HEADS)})")
    model = cls(config, label_embeddings, pretrained=pretrained, pretrained_path=pretrained_path)
    model.gather = gather
    return model


__all__ = ["HEADS", "SALGL", "BackboneModel", "GatherFn", "PlainClassifier", "SalglConfig",
           "create_model"]
