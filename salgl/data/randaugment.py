"""The RandAugment policy of the ``randaugment`` PyPI package 1.0.2, used by the released SALGL.

The released training recipe augments with ``randaugment.RandAugment()`` from that package, whose
policy differs from ``torchvision.transforms.RandAugment``: 15 ops, 2 drawn per image, each
applied only with probability 0.5 (so a quarter of the images pass unchanged), and a random
magnitude level 1..9 on a 10-level table per applied op. That package no longer imports on
numpy >= 1.24, so this module re-implements its policy with PIL, drawing every random number from
torch's global RNG so that the trainer's per-epoch ``torch.manual_seed`` and the DataLoader's
per-worker seeding make the augmentation reproducible.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from salgl.errors import SalglError

OPS: tuple[str, ...] = (
    "Invert", "Cutout", "Sharpness", "AutoContrast", "Posterize", "ShearX", "TranslateX",
    "TranslateY", "ShearY", "Rotate", "Equalize", "Contrast", "Color", "Solarize", "Brightness",
)
NUM_OPS = 2
OP_PROBABILITY = 0.5
MAGNITUDE_LEVELS = 10
FILL = (128, 128, 128)

_SHEAR = np.linspace(0, 0.3, MAGNITUDE_LEVELS)
_TRANSLATE = np.linspace(0, 150 / 331, MAGNITUDE_LEVELS)  # fraction of the image side
_ENHANCE = np.linspace(0, 0.9, MAGNITUDE_LEVELS)  # the enhance factor is 1 + sign * value
_TABLES: dict[str, np.ndarray] = {
    "ShearX": _SHEAR,
    "ShearY": _SHEAR,
    "TranslateX": _TRANSLATE,
    "TranslateY": _TRANSLATE,
    "Rotate": np.linspace(0, 30, MAGNITUDE_LEVELS),  # degrees
    "Color": _ENHANCE,
    "Contrast": _ENHANCE,
    "Sharpness": _ENHANCE,
    "Brightness": _ENHANCE,
    "Posterize": np.round(np.linspace(8, 4, MAGNITUDE_LEVELS)).astype(int),  # bits kept
    "Solarize": np.linspace(256, 0, MAGNITUDE_LEVELS),  # invert pixels >= threshold
    "Cutout": np.round(np.linspace(0, 20, MAGNITUDE_LEVELS)).astype(int),  # square side, px
}
_ENHANCERS = {
    "Color": ImageEnhance.Color,
    "Contrast": ImageEnhance.Contrast,
    "Sharpness": ImageEnhance.Sharpness,
    "Brightness": ImageEnhance.Brightness,
}


def magnitude_table(op: str) -> np.ndarray:
    """The 10-level magnitude table of ``op`` (a copy), so tests and users can inspect it.

    Invert, AutoContrast and Equalize have no magnitude and raise KeyError, as do unknown names.
    """
    if op not in _TABLES:
        raise KeyError(f"RandAugment op {op!r} has no magnitude table "
                       f"(ops with one: {', '.join(sorted(_TABLES))})")
    return _TABLES[op].copy()


def _check_image(image: object) -> None:
    """Fill colours and enhancers assume 3-band 8-bit images: refuse anything else clearly."""
    if not isinstance(image, Image.Image):
        raise SalglError(f"RandAugment expects a PIL image, got {type(image).__name__}")
    if image.mode != "RGB":
        raise SalglError(f"RandAugment expects an RGB image, got mode {image.mode!r}; "
                         "convert it with image.convert('RGB') first")


def _cutout(image: Image.Image, side: int, centre: tuple[int, int] | None) -> Image.Image:
    """Grey square of ``side`` px centred at ``centre`` (default: the image centre), clipped."""
    if side <= 0:
        return image.copy()
    w, h = image.size
    cx, cy = centre if centre is not None else (w // 2, h // 2)
    x0, y0 = cx - side // 2, cy - side // 2
    box = (max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h))
    out = image.copy()
    if box[0] < box[2] and box[1] < box[3]:
        out.paste(FILL, box)
    return out


def apply_op(image: Image.Image, op: str, level: int, sign: int, *,
             centre: tuple[int, int] | None = None) -> Image.Image:
    """Apply one op at magnitude ``level`` (0..9) and direction ``sign`` (+1 or -1).

    Deterministic given its arguments (it draws no random number), so a sampled plan can be
    replayed and each op tested on its own. ``sign`` only matters for the shear, translate and
    rotate ops and the 1 +/- x enhance factors; ``centre`` is the (x, y) centre of the Cutout
    square and defaults to the image centre. Returns a new image of the same size and mode.
    """
    _check_image(image)
    if op not in OPS:
        raise SalglError(f"unknown RandAugment op {op!r}; expected one of {', '.join(OPS)}")
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) \
            or not 0 <= level < MAGNITUDE_LEVELS:
        raise SalglError(f"RandAugment level must be an integer in 0..{MAGNITUDE_LEVELS - 1}, "
                         f"got {level!r}")
    if sign not in (1, -1):
        raise SalglError(f"RandAugment sign must be +1 or -1, got {sign!r}")
    level, sign = int(level), int(sign)
    if op == "Invert":
        return ImageOps.invert(image)
    if op == "AutoContrast":
        return ImageOps.autocontrast(image)
    if op == "Equalize":
        return ImageOps.equalize(image)
    value = _TABLES[op][level]
    if op in _ENHANCERS:
        return _ENHANCERS[op](image).enhance(1.0 + sign * float(value))
    if op == "Posterize":
        return ImageOps.posterize(image, int(value))
    if op == "Solarize":
        return ImageOps.solarize(image, float(value))
    if op == "Cutout":
        return _cutout(image, int(value), centre)
    if op == "Rotate":
        return image.rotate(sign * float(value), fillcolor=FILL)
    w, h = image.size
    m = sign * float(value)
    # AFFINE data (a, b, c, d, e, f) maps each output pixel (x, y) to input (ax+by+c, dx+ey+f).
    affine = {
        "ShearX": ((1, m, 0, 0, 1, 0), Image.Resampling.BICUBIC),
        "ShearY": ((1, 0, 0, m, 1, 0), Image.Resampling.BICUBIC),
        "TranslateX": ((1, 0, m * w, 0, 1, 0), Image.Resampling.NEAREST),
        "TranslateY": ((1, 0, 0, 0, 1, m * h), Image.Resampling.NEAREST),
    }
    data, resample = affine[op]
    return image.transform(image.size, Image.Transform.AFFINE, data, resample, fillcolor=FILL)


class ReleasedRandAugment:
    """RandAugment as released with SALGL: ``num_ops`` ops drawn with replacement from OPS,
    each applied with ``probability`` at a random level 1..9 and a random sign.

    ``num_ops`` and ``probability`` default to the released policy; they are parameters only so
    the policy's distribution can be checked against a deliberately wrong one.
    """

    def __init__(self, num_ops: int = NUM_OPS, probability: float = OP_PROBABILITY):
        if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 0:
            raise SalglError(f"RandAugment num_ops must be a non-negative integer, got {num_ops!r}")
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) \
                or not 0.0 <= probability <= 1.0:
            raise SalglError(f"RandAugment probability must be in [0, 1], got {probability!r}")
        self.num_ops = num_ops
        self.probability = float(probability)

    def sample_plan(self) -> list[tuple[str, int, int]]:
        """Draw the (op, level, sign) list applied to one image: 0 to ``num_ops`` entries.

        Uses torch's global RNG only, a fixed number of draws per image whatever is applied.
        """
        if self.num_ops == 0:
            return []
        n = self.num_ops
        ops = torch.randint(len(OPS), (n,)).tolist()
        applied = (torch.rand(n) < self.probability).tolist()
        levels = torch.randint(1, MAGNITUDE_LEVELS, (n,)).tolist()
        signs = (torch.randint(0, 2, (n,)) * 2 - 1).tolist()
        drawn = zip(ops, applied, levels, signs, strict=True)
        return [(OPS[o], lv, s) for o, a, lv, s in drawn if a]

    def __call__(self, image: Image.Image) -> Image.Image:
        """Augment one RGB image (the input itself is returned when no op is applied)."""
        _check_image(image)
        for op, level, sign in self.sample_plan():
            centre = None
            if op == "Cutout":  # the square's centre is uniform over the image
                w, h = image.size
                centre = (int(torch.randint(w, ())), int(torch.randint(h, ())))
            image = apply_op(image, op, level, sign, centre=centre)
        return image

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_ops={self.num_ops}, probability={self.probability}, "
                f"levels=1..{MAGNITUDE_LEVELS - 1} of {MAGNITUDE_LEVELS}, ops={len(OPS)})")
