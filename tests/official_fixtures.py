"""A fake released experiment (the authors' layout: config.yaml and
checkpoints/ema_best_model.pth) for the import tests and the file-mode test."""

from __future__ import annotations

from pathlib import Path

import torch

# The key table of a released ResNet-101 / 80-label / 6-scene checkpoint (names and shapes).
KEY_TABLE = Path(__file__).resolve().parent / "data" / "official-checkpoint-keys.tsv"
C, S = 80, 6


def key_table() -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    for line in KEY_TABLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or line.startswith("key\t") or not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        dims = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
        rows.append((key, dims, dtype))
    return rows


def fake_checkpoint(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the table's shapes, with a realistic memory and BatchNorm stats."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, dims, dtype in key_table():
        if dtype == "int64":
            state[key] = torch.tensor(1000, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(dims, generator=gen)
        elif key.endswith("running_mean"):
            state[key] = 0.1 * torch.randn(dims, generator=gen)
        elif key.endswith("bn3.weight") or ".bn" in key and key.endswith("weight"):
            state[key] = 0.2 + 0.3 * torch.rand(dims, generator=gen)
        elif key == "module.comatrix":
            labels = (torch.rand(S, 300, C, generator=gen) < 0.08).float()
            state[key] = torch.einsum("sbi,sbj->sij", labels, labels)
        else:
            fan_in = dims[1] if len(dims) > 1 else dims[0]
            for d in dims[2:]:
                fan_in *= d
            state[key] = torch.randn(dims, generator=gen) / fan_in ** 0.5
    return state


def write_experiment(root: Path, config: dict, state: dict | None = None) -> Path:
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in config.items()),
                                      encoding="utf-8")
    torch.save(state if state is not None else fake_checkpoint(),
               root / "checkpoints" / "ema_best_model.pth")
    return root


def released_config(**changes) -> dict:
    config = dict(model="SALGL", backbone="resnet101", data="coco", img_size=224,
                  num_classes=C, num_scenes=S, num_steps=3, embed_type="glove",
                  embed_path="data/coco/glove.npy", outmess=True, normalize=True,
                  ignore_self=False, soft=False, pos=False, comat_ema=True, ema_decay=0.9997,
                  orid_norm=False, threshold=0.5, topk=3)
    config.update(changes)
    return config


def labels_file(path: Path, count: int = C) -> Path:
    path.write_text("".join(f"label {i}\n" for i in range(count)), encoding="utf-8")
    return path


# ------------------------------------------------------------------ the naive reference
