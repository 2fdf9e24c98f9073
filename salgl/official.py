"""Import the authors' released checkpoints into our self-contained model files.

A released experiment folder holds ``config.yaml`` (``key: value`` lines written with plain
``str()``) and ``checkpoints/ema_best_model.pth`` (a flat state dict, keys prefixed
``module.``). The state dict is read with ``torch.load(weights_only=True)`` only, so a file
whose pickle would run code is refused. Every key is mapped onto our model and every shape is
checked before anything is written.
"""

from __future__ import annotations

import ast
from pathlib import Path

import torch

from salgl.checkpoint import save_model
from salgl.data.prepared import check_label_names
from salgl.errors import SalglError
from salgl.model.backbone import check_backbone_name
from salgl.model.weight_files import read_state_dict

NEEDED_KEYS = ("backbone", "img_size", "num_classes", "num_scenes", "num_steps", "embed_type",
               "outmess", "normalize", "ignore_self", "soft", "orid_norm")

# Released head names -> ours, where the mapping is one to one.
HEAD_NAMES = {
    "embeddings": "label_embeddings",
    "comatrix": "cooccurrence",
    "scene_linear.weight": "scene_classifier.weight",
    "attention.linear1.weight": "attention.visual_proj.weight",
    "attention.linear2.weight": "attention.label_proj.weight",
    "attention.hidden_linear.weight": "attention.hidden.weight",
    "attention.hidden_linear.bias": "attention.hidden.bias",
    "attention.target_linear.weight": "attention.score.weight",
    "attention.target_linear.bias": "attention.score.bias",
    "fc.0.weight": "fusion.weight",
    "fc.0.bias": "fusion.bias",
    "classifier.weight": "classifier.weight",
    "classifier.bias": "classifier.bias",
    "ggnn.fc3_u.weight": "propagation.cand_h.weight",
    "ggnn.fc3_u.bias": "propagation.cand_h.bias",
}
# Our fused gate maps, built by stacking the released ones row-wise in this order.
FUSED = {
    "propagation.x_proj": ("ggnn.fc1_w", "ggnn.fc2_w", "ggnn.fc3_w"),
    "propagation.h_proj": ("ggnn.fc1_u", "ggnn.fc2_u"),
}
ENCODER_PREFIX = ("tb.layers.0.", "encoder.")


def _literal(text: str):
    """A value as the released code wrote it with str(): True, 0.5, None, [1, 2], words."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def read_config(path: Path) -> dict:
    if not path.is_file():
        raise SalglError(f"{path}: missing (a released experiment folder has config.yaml)")
    config = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if ":" not in line:
            raise SalglError(f"{path}:{number}: expected 'key: value'")
        key, value = line.split(":", 1)
        config[key.strip()] = _literal(value.strip())
    for key in NEEDED_KEYS:
        if key not in config:
            raise SalglError(f"{path}: needed key '{key}' is missing")
    return config


def read_labels(path: Path, num_classes: int) -> list[str]:
    if not path.is_file():
        raise SalglError(f"{path}: labels file not found")
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
              if line.strip()]
    check_label_names(labels, str(path))
    if len(labels) != num_classes:
        raise SalglError(f"{path}: {len(labels)} labels, but config.yaml says num_classes "
                         f"{num_classes}")
    return labels


def convert_state(state: dict[str, torch.Tensor], where: Path) -> dict[str, torch.Tensor]:
    """Released key names -> ours; unknown keys are refused by name."""
    plain = {k.removeprefix("module."): v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, value in plain.items():
        if key.startswith("backbone."):
            out[key] = value
        elif key.startswith(ENCODER_PREFIX[0]):
            out[ENCODER_PREFIX[1] + key[len(ENCODER_PREFIX[0]):]] = value
        elif key in HEAD_NAMES:
            out[HEAD_NAMES[key]] = value
        else:
            continue
        used.add(key)
    for ours, parts in FUSED.items():
        for suffix in ("weight", "bias"):
            names = [f"{p}.{suffix}" for p in parts]
            missing = [n for n in names if n not in plain]
            if missing:
                raise SalglError(f"{where}: missing key module.{missing[0]}")
            out[f"{ours}.{suffix}"] = torch.cat([plain[n] for n in names], dim=0)
            used.update(names)
    unexpected = sorted(set(plain) - used)
    if unexpected:
        raise SalglError(f"{where}: unexpected key module.{unexpected[0]} "
                         f"({len(unexpected)} unexpected in all)")
    return out


def _shape(state: dict[str, torch.Tensor], key: str, where: Path, dim: int) -> int:
    if f"module.{key}" in state:
        return int(state[f"module.{key}"].shape[dim])
    if key in state:
        return int(state[key].shape[dim])
    raise SalglError(f"{where}: missing key module.{key}")


def build_config(config: dict, state: dict[str, torch.Tensor], where: Path):
    from salgl.model import SalglConfig

    random_embeddings = str(config["embed_type"]).lower() == "random"
    return SalglConfig(
        backbone=str(config["backbone"]), num_classes=int(config["num_classes"]),
        img_size=int(config["img_size"]),
        embed_dim=None if random_embeddings else _shape(state, "embeddings", where, 1),
        num_scenes=int(config["num_scenes"]), num_steps=int(config["num_steps"]),
        attention_dim=_shape(state, "attention.linear1.weight", where, 0),
        encoder_ffn=_shape(state, "tb.layers.0.linear1.weight", where, 0),
        pos_encoding=bool(config.get("pos", False)), outmess=bool(config["outmess"]),
        normalize=bool(config["normalize"]), ignore_self=bool(config["ignore_self"]),
        soft=bool(config["soft"]))


def import_official(exp_dir: str | Path, labels_path: str | Path, out: str | Path) -> dict:
    """Convert a released experiment folder into ``out`` (our safetensors model file)."""
    from salgl.data.dataset import normalization_stats
    from salgl.model import SALGL

    exp_dir, out = Path(exp_dir), Path(out)
    config_path = exp_dir / "config.yaml"
    config = read_config(config_path)
    labels = read_labels(Path(labels_path), int(config["num_classes"]))
    check_backbone_name(str(config["backbone"]), f"{config_path}: backbone")
    weights = exp_dir / "checkpoints" / "ema_best_model.pth"
    state = read_state_dict(weights, f"{exp_dir}: checkpoint")
    model_config = build_config(config, state, weights)
    converted = convert_state(state, weights)
    model = SALGL(model_config)
    own = model.state_dict()
    extra = sorted(set(converted) - set(own))
    if extra:
        raise SalglError(f"{weights}: unexpected key module.{extra[0]} for backbone "
                         f"{model_config.backbone!r}")
    for key in sorted(own):
        if key not in converted:
            raise SalglError(f"{weights}: missing weights for {key}")
        if tuple(converted[key].shape) != tuple(own[key].shape):
            raise SalglError(f"{weights}: {key} has shape {tuple(converted[key].shape)}, "
                             f"config.yaml implies {tuple(own[key].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in converted.items()}, strict=True)
    kind = "none" if config["orid_norm"] else "imagenet"
    mean, std = normalization_stats(kind)
    save_model(out, model, labels, {"kind": kind, "mean": list(mean), "std": list(std)},
               extra={"source": "official", "experiment": str(exp_dir),
                      "config": {k: str(v) for k, v in config.items()}})
    return {"labels": len(labels), "backbone": model_config.backbone,
            "img_size": model_config.img_size, "soft": model_config.soft}
