"""Weight files from outside salgl (timm or torchvision state dicts, the authors'
checkpoints, packaged ImageNet weights): read as tensors, never by running pickle code."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from salgl.errors import SalglError


def _pickle_refusal(exc: Exception) -> str:
    """Why a pickle was refused, in our words: PyTorch's own message goes on to suggest
    loading it with ``weights_only=False``, which would run whatever code the file holds."""
    found = re.search(r"unsupported GLOBAL (\S+)", str(exc))
    what = f" ({found.group(1)})" if found else ""
    return (f"its pickle would build an object other than tensors{what}, which could run "
            "code, so it is never loaded; ask for a safetensors file or a plain state dict")


def read_state_dict(path: str | Path, key: str) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, or a state dict loaded without running pickle code."""
    path = Path(path)
    if not path.is_file():
        raise SalglError(f"{key}: weight file {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise SalglError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise SalglError(f"{path}: refused or unreadable weight file: {_pickle_refusal(exc)}"
                         ) from None
    except Exception as exc:
        raise SalglError(f"{path}: refused or unreadable weight file ({str(exc).splitlines()[0]})"
                         ) from None
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise SalglError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state
