"""Decode any image file into the 8-bit RGB picture the model sees, the same way everywhere.

Training, evaluation and ``salgl predict`` all read images through ``open_rgb``, so a phone
photo or a 16-bit scan reaches the model the same way in each. PIL's plain
``convert("RGB")`` gets two common cases wrong: it ignores the EXIF orientation tag (a
portrait photo arrives sideways) and it clips 16-bit values at 255 instead of scaling them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from salgl.errors import SalglError

# Modes whose values span more than 8 bits, with the largest value of their range.
_WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}
_BACKGROUND = (255, 255, 255)  # what transparent pixels are composited onto


class ImageReadError(SalglError):
    """One image file could not be used; ``reason`` says why without repeating the path."""

    def __init__(self, path: str, reason: str | None = None):
        # One argument is the whole message: how a DataLoader worker re-raises it.
        super().__init__(path if reason is None else f"{path}: {reason}")
        self.path, self.reason = path, reason if reason is not None else path


def _scale_wide(image: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer or float) greyscale to 8 bits by scaling, not clipping."""
    values = np.asarray(image)
    if image.mode == "F":
        top = 1.0 if values.size and float(np.nanmax(values)) <= 1.0 else 255.0
        scaled = np.nan_to_num(values, nan=0.0) * (255.0 / top)
    else:
        scaled = values.astype(np.float64) * (255.0 / _WIDE_MODES[image.mode])
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L")


def _flatten_alpha(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB: EXIF orientation applied, wide modes scaled, alpha on white."""
    image = ImageOps.exif_transpose(image)
    if image.mode in _WIDE_MODES or image.mode == "F":
        image = _scale_wide(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _flatten_alpha(image)
    return image.convert("RGB")


def open_rgb(path: str) -> Image.Image:
    """Decode ``path`` as upright 8-bit RGB, or raise ImageReadError saying why."""
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except FileNotFoundError:
        raise ImageReadError(path, "image not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not an image") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"image too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "cannot decode image: not a format PIL can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError(path, f"cannot decode image ({exc})") from None
