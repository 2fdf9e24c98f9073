"""Backbones by timm name, turned into visual tokens (method.md step 1)."""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from salgl.errors import SalglError
from salgl.model.packaged_weights import PACKAGE, packaged_backbone_state
from salgl.model.recompute import forward_recomputing
from salgl.model.weight_files import read_state_dict


def check_backbone_name(name: str, key: str) -> None:
    """Fail with the params key and close matches when timm does not know ``name``."""
    import timm

    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else " (see timm.list_models())"
    raise SalglError(f"{key}: unknown backbone {name!r}{hint}")


def create_backbone(name: str, *, img_size: int, output_stride: int | None = None,
                    stage: int | None = None, pretrained: bool = False,
                    pretrained_path: str | None = None, key: str = "backbone") -> nn.Module:
    """A timm model without classifier or pooling.

    ``stage`` (timm's feature index) stops the network early and uses that stage's feature
    map: a cheaper, narrower backbone for small images; None uses the last features.
    ``pretrained_path`` is a local weight file, or ``package``: the ImageNet weights an
    installed package ships for ``name`` (salgl.model.packaged_weights), for no download.
    """
    import timm

    check_backbone_name(name, key)
    packaged = None
    if pretrained_path == PACKAGE:  # checked and read before the model is built
        packaged = packaged_backbone_state(name, f"{key} pretrained_path")
    if stage is None:
        kwargs: dict = {"num_classes": 0, "global_pool": ""}
    else:
        kwargs = {"features_only": True, "out_indices": (stage,)}
    if output_stride is not None and output_stride != 32:
        kwargs["output_stride"] = output_stride
    if _is_transformer(name):
        kwargs["img_size"] = img_size
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as exc:  # timm raises many types for unreachable hubs / bad kwargs
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if pretrained:
            raise SalglError(f"{key}: could not download pretrained weights for {name!r} "
                             f"(tried {_weight_source(name)}): {reason}; set pretrained_path "
                             "to a local file instead") from None
        raise SalglError(f"{key}: could not build {name!r}: {reason}") from None
    if packaged is not None:
        load_backbone_state(model, packaged, f"{key} pretrained_path: {PACKAGE} ({name})")
    elif pretrained_path:
        load_backbone_weights(model, pretrained_path, key=f"{key} pretrained_path")
    if stage is not None:
        model.num_features = model.feature_info.channels()[-1]
    return model


def _weight_source(name: str) -> str:
    """Where timm looks for ``name``'s pretrained weights, for error messages."""
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(name)
        if cfg is not None:
            hub = getattr(cfg, "hf_hub_id", None)
            return f"hf-hub:{hub}" if hub else (getattr(cfg, "url", None) or "timm's default")
    except Exception:  # the message must not fail while reporting another failure
        pass
    return "timm's default source"


def _is_transformer(name: str) -> bool:
    return name.split("_")[0] in {"vit", "deit", "deit3", "beit", "eva", "eva02"}


def load_backbone_weights(model: nn.Module, path: str | Path, key: str) -> None:
    """Load a backbone's weights from a file (see ``load_backbone_state``)."""
    load_backbone_state(model, read_state_dict(path, key), str(path))


def load_backbone_state(model: nn.Module, state: dict[str, torch.Tensor], source: str
                        ) -> None:
    """Load a backbone's weights, ignoring classifier heads and the layers a model cut at
    ``stage`` does not have, refusing anything the model has that ``state`` lacks;
    ``source`` starts each error."""
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    missing = sorted(set(own) - set(usable))
    if missing:
        raise SalglError(f"{source}: {len(missing)} backbone weights missing, e.g. {missing[:3]}")
    for name, tensor in usable.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise SalglError(f"{source}: {name} has shape {tuple(tensor.shape)}, "
                             f"the backbone expects {tuple(own[name].shape)}")
    model.load_state_dict(usable, strict=True)


def backbone_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The backbone's last feature map (or token sequence)."""
    if hasattr(model, "forward_features"):
        return model.forward_features(images)
    return model(images)[-1]  # a timm features_only wrapper


def feature_tokens(model: nn.Module, images: torch.Tensor, recompute_cut: int = 0
                   ) -> tuple[torch.Tensor, tuple[int, int]]:
    """Tokens (B, N, D) and the (h, w) grid they came from (ViT: grid without prefix tokens).

    ``recompute_cut`` > 0 checkpoints that many leading modules (salgl.model.recompute).
    """
    if recompute_cut:
        features = forward_recomputing(model, images, recompute_cut)
    else:
        features = backbone_features(model, images)
    if features.ndim == 4:
        b, d, h, w = features.shape
        return features.flatten(2).transpose(1, 2), (h, w)
    prefix = getattr(model, "num_prefix_tokens", 0)
    side = int(round((features.shape[1] - prefix) ** 0.5))
    return features, (side, side)
