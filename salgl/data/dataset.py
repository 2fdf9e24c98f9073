"""Torch datasets over prepared lists, with the augmentation recipe of method.md."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from salgl.data.decode import open_rgb
from salgl.data.randaugment import ReleasedRandAugment
from salgl.errors import SalglError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # timm's name; weights ported from TensorFlow use it
INCEPTION_STD = (0.5, 0.5, 0.5)

# TrainConfig.normalization -> (mean, std) per RGB channel, applied to inputs in [0, 1];
# salgl.checkpoint.NORMALIZATION_KINDS lists the same names for model files.
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "inception": (INCEPTION_MEAN, INCEPTION_STD),  # inputs in [-1, 1]
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # inputs kept in [0, 1] (released orid_norm)
}


def normalization_stats(kind: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std of a ``normalization`` choice (``NORMALIZATIONS``)."""
    if kind not in NORMALIZATIONS:
        raise SalglError(f"normalization: unknown kind {kind!r}, expected one of "
                         f"{', '.join(NORMALIZATIONS)}")
    return NORMALIZATIONS[kind]


class CutoutPatch:
    """One square patch of half the image side, filled with a random colour."""

    def __init__(self, fraction: float = 0.5):
        self.fraction = fraction

    def __call__(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        side_w, side_h = int(w * self.fraction), int(h * self.fraction)
        cx, cy = int(torch.randint(w, ())), int(torch.randint(h, ()))
        box = (max(cx - side_w // 2, 0), max(cy - side_h // 2, 0),
               min(cx + side_w // 2, w), min(cy + side_h // 2, h))
        colour = tuple(int(v) for v in torch.randint(0, 256, (3,)))
        image = image.copy()
        image.paste(colour, box)
        return image


def build_transform(img_size: int, normalization: str, train: bool, *, hflip: bool = True,
                    cutout: bool = True, randaugment: bool = True,
                    augment: str = "released") -> T.Compose:
    mean, std = normalization_stats(normalization)
    steps: list = [T.Resize((img_size, img_size))]
    if train:
        if hflip:
            steps.append(T.RandomHorizontalFlip())
        if cutout:
            steps.append(CutoutPatch())
        if randaugment:
            steps.append(ReleasedRandAugment() if augment == "released" else T.RandAugment())
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


def check_images_exist(paths: Sequence[str], list_file: str | Path) -> None:
    """Fail before any training when a listed image is missing."""
    for number, path in enumerate(paths, start=1):
        if not os.path.isfile(path):
            raise SalglError(f"{list_file}:{number}: image {path} not found")


class MultiLabelImages(Dataset):
    """(image tensor, float targets, index) for a prepared split."""

    def __init__(self, paths: Sequence[str], targets: np.ndarray, transform: T.Compose):
        self.paths = list(paths)
        self.targets = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.transform(open_rgb(self.paths[index])), self.targets[index], index
