"""Our model files: one self-contained safetensors file per model (resume state: resume.py).

A model file holds every tensor of the model (the co-occurrence memory and label embeddings
included) plus JSON metadata: format version, label names, the architecture config, input size
and normalisation. Nothing is pickled, so loading a file never runs code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from salgl.atomic import atomic_path
from salgl.errors import SalglError

FORMAT = "salgl-model"
FORMAT_VERSION = 1
META_KEY = "salgl"
REQUIRED_FIELDS = ("format", "format_version", "labels", "model", "normalization")


@dataclass
class ModelInfo:
    labels: list[str]
    config: Any  # SalglConfig
    normalization: dict
    extra: dict


def contiguous_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_model(path: str | Path, model: torch.nn.Module, labels: list[str],
               normalization: dict, extra: dict | None = None) -> None:
    """Write ``model`` (a SALGL) with everything needed to rebuild it, atomically."""
    from safetensors.torch import save_file

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "labels": list(labels),
        "model": model.config.to_dict(),
        "normalization": normalization,
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        save_file(contiguous_copy(model.state_dict()), str(tmp),
                  metadata={META_KEY: json.dumps(meta)})


def read_model_info(path: str | Path) -> dict:
    """The metadata of a model file, checked field by field."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise SalglError(f"{path}: model file not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:
        raise SalglError(f"{path}: not a readable safetensors file ({exc})") from None
    if META_KEY not in metadata:
        raise SalglError(f"{path}: metadata field '{META_KEY}' missing (not a salgl model file)")
    try:
        meta = json.loads(metadata[META_KEY])
    except json.JSONDecodeError:
        raise SalglError(f"{path}: metadata field '{META_KEY}' is not valid JSON") from None
    for name in REQUIRED_FIELDS:
        if name not in meta:
            raise SalglError(f"{path}: metadata field '{name}' missing")
    if meta["format"] != FORMAT:
        raise SalglError(f"{path}: metadata field 'format' is {meta['format']!r}, "
                         f"expected {FORMAT!r}")
    version = meta["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise SalglError(f"{path}: metadata field 'format_version' is {version!r}; this salgl "
                         f"reads up to {FORMAT_VERSION} (upgrade salgl)")
    return meta


def describe_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor],
                      shown: int = 3) -> str:
    """One line naming missing and unexpected keys and shape differences ("" if none)."""
    def listing(names: list[str], what: str) -> str:
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        return f"{len(names)} {what} ({', '.join(names[:shown])}{more})"

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k} {tuple(found[k].shape)} instead of {tuple(expected[k].shape)}"
              for k in sorted(set(expected) & set(found))
              if tuple(found[k].shape) != tuple(expected[k].shape)]
    parts = [listing(names, what) for names, what in ((missing, "missing"),
                                                      (unexpected, "unexpected"),
                                                      (shapes, "with another shape")) if names]
    return "; ".join(parts)


def load_model(path: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[torch.nn.Module, ModelInfo]:
    """Rebuild a SALGL model from one of our files, in eval mode."""
    from safetensors.torch import load_file

    from salgl.model import SalglConfig, create_model

    meta = read_model_info(path)
    try:
        config = SalglConfig.from_dict(meta["model"])
    except (TypeError, ValueError) as exc:
        raise SalglError(f"{path}: metadata field 'model' is invalid ({exc})") from None
    if len(meta["labels"]) != config.num_classes:
        raise SalglError(f"{path}: metadata field 'labels' has {len(meta['labels'])} names "
                         f"for {config.num_classes} classes")
    state = load_file(str(path))
    model = create_model(config)
    mismatch = describe_mismatch(model.state_dict(), state)
    if mismatch:
        raise SalglError(f"{path}: tensors do not match the stored config: {mismatch}")
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    info = ModelInfo(labels=meta["labels"], config=config, normalization=meta["normalization"],
                     extra=meta.get("extra", {}))
    return model, info
