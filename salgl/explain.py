"""Per-label explanation maps from SALGL's own label attention (method.md step 9).

For each label c, the model's LabelAttention weighs the N visual tokens of an image with
alpha[c, :], a softmax over the token positions, and pools them into that label's visual
feature, which the label graph then propagates. This module reads alpha from the model's
outputs, lays it out on the backbone's token grid, resizes it bilinearly to the size an image
is shown at, and draws an image with the maps of some of its labels. What the maps show and
what they do not: docs/method-notes.md, "What the explanation maps show".

The plain baseline (head: linear) pools every token alike and has no label attention:
``check_explainable`` refuses it with one line.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from salgl.errors import SalglError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from PIL import Image

DISPLAY_SIDE = 320  # an image is drawn at most this many pixels on its longer side
OVERLAY_ALPHA = 0.55  # how much of the heat map covers the image
PANEL_INCHES = 2.6
MIN_WIDTH_INCHES = 5.0  # room for the title and the caption beside one panel


def check_explainable(config, where: str) -> None:
    """Refuse a model without label attention (the plain baseline), naming ``where``."""
    if config.head != "salgl":
        raise SalglError(f"{where}: a model with the {config.head} head has no label "
                         "attention to draw (it pools every token alike); explanation maps "
                         "need a SALGL model (head: salgl)")


def prefix_tokens(model: nn.Module) -> int:
    """How many tokens come before the grid (a ViT's class token), as feature_tokens reads
    them; 0 for convolutional backbones."""
    return int(getattr(model.backbone, "num_prefix_tokens", 0) or 0)


def token_grid(model: nn.Module, tokens: int) -> tuple[int, int, int]:
    """(prefix tokens, h, w) of the ``tokens`` positions a model's attention spans.

    Inputs are square (the evaluation transform resizes to img_size x img_size), so the grid
    is square; prefix tokens come first.
    """
    prefix = prefix_tokens(model)
    side = math.isqrt(max(tokens - prefix, 0))
    if side == 0 or side * side != tokens - prefix:
        raise SalglError(f"cannot lay out {tokens} attention weights ({prefix} prefix tokens) "
                         "on a square token grid")
    return prefix, side, side


@dataclass
class LabelMaps:
    """A batch's label scores and label-attention maps over the token grid."""

    scores: torch.Tensor  # (B, C) sigmoid scores
    maps: torch.Tensor  # (B, C, h, w) attention weights over the grid positions
    prefix: int  # tokens before the grid (a ViT's class token), left out of the maps
    outside: torch.Tensor  # (B, C) the weight on those prefix tokens (0 without any)

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.maps.shape[-2]), int(self.maps.shape[-1])

    @property
    def tokens(self) -> int:
        """How many positions each softmax spans (grid and prefix)."""
        return self.prefix + self.grid[0] * self.grid[1]


def grid_maps(alpha: torch.Tensor, model: nn.Module
              ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Attention (..., N) as maps (..., h, w) over the grid, the weight on prefix tokens
    (...), and how many prefix tokens there are."""
    prefix, h, w = token_grid(model, alpha.shape[-1])
    return alpha[..., prefix:].unflatten(-1, (h, w)), alpha[..., :prefix].sum(-1), prefix


@torch.no_grad()
def label_maps(model: nn.Module, images: torch.Tensor,
               size: tuple[int, int] | None = None) -> LabelMaps:
    """Scores and each label's attention map for a batch of normalised images (B, 3, S, S)
    and a model in eval mode (as load_model gives it), in fp32 on the CPU; ``size`` (H, W)
    resizes the maps bilinearly to it."""
    from salgl.inference import scores_and_scenes

    outputs = model(images)
    if "attention" not in outputs:
        raise SalglError("this model returns no label attention (head: linear); explanation "
                         "maps need a SALGL model (head: salgl)")
    scores, _ = scores_and_scenes(outputs)
    maps, outside, prefix = grid_maps(outputs["attention"].float(), model)
    if size is not None:
        maps = resize_maps(maps, size)
    return LabelMaps(scores.cpu(), maps.cpu(), prefix, outside.cpu())


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps (..., h, w) resized bilinearly to (..., H, W); every leading map at once."""
    lead, grid = maps.shape[:-2], maps.shape[-2:]
    flat = maps.reshape(1, -1, *grid).float()
    resized = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return resized.reshape(*lead, *size)


def display_size(width: int, height: int, side: int = DISPLAY_SIDE) -> tuple[int, int]:
    """(width, height) an image is shown at: its own, or scaled down to ``side`` pixels on
    its longer side."""
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def display_image(image: Image.Image) -> np.ndarray:
    """An RGB image as shown in the figures: (H, W, 3) uint8, at display_size."""
    from PIL import Image as PILImage

    size = display_size(*image.size)
    if size != image.size:
        image = image.resize(size, PILImage.Resampling.BILINEAR)
    return np.asarray(image.convert("RGB"))


def colour_limit(maps: np.ndarray, tokens: int) -> float:
    """The top of the colour scale: the largest weight drawn, and at least the uniform 1/N."""
    return max(float(np.max(maps, initial=0.0)), 1.0 / tokens)


def overlay(ax: Axes, image: np.ndarray, heat: np.ndarray | None, top: float, title: str):
    """One panel: the image, with ``heat`` (H, W) over it on a 0..top scale when given."""
    from salgl.figures.common import FONT_LABEL, heat_cmap

    ax.imshow(image)
    shown = None
    if heat is not None:
        shown = ax.imshow(heat, cmap=heat_cmap(), vmin=0.0, vmax=top, alpha=OVERLAY_ALPHA)
    ax.set_title(title, fontsize=FONT_LABEL)
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def colour_key(fig: Figure, mappable, axes, grid: tuple[int, int], prefix: int) -> None:
    """The colour bar of every panel, marked at the uniform weight, and a one-line caption
    saying what the colour is."""
    from salgl.figures.common import FONT_SMALL

    tokens = prefix + grid[0] * grid[1]
    bar = fig.colorbar(mappable, ax=axes, shrink=0.9, pad=0.02)
    bar.set_label("attention weight of a token position", fontsize=FONT_SMALL)
    bar.ax.tick_params(labelsize=FONT_SMALL)
    bar.ax.axhline(1.0 / tokens, color="white", linewidth=1.2)
    bar.ax.axhline(1.0 / tokens, color="black", linewidth=0.6, linestyle="--")
    left_out = f"; {prefix} prefix token(s) left out" if prefix else ""
    caption = (f"Colour: each label's attention over the backbone's {grid[0]}x{grid[1]} "
               f"token grid (sums to 1{left_out}; dashed: uniform 1/{tokens}), resized "
               "bilinearly: where the label looks, not a causal attribution")
    fig.supxlabel(wrapped(caption, fig, FONT_SMALL), fontsize=FONT_SMALL)


def wrapped(text: str, fig: Figure, points: float) -> str:
    """``text`` broken into lines that fit the figure's width at a font of ``points``
    (a character taken as 0.6 of the font size wide); its own line breaks are kept."""
    width = max(30, int(fig.get_figwidth() * 72 / (0.6 * points)))
    return "\n".join(textwrap.fill(line, width, break_long_words=True)
                     for line in text.splitlines())


def explanation_figure(image: np.ndarray, maps: np.ndarray, names: Sequence[str],
                       scores: Sequence[float], title: str, prefix: int = 0) -> Figure:
    """One image (H, W, 3) with the maps (K, h, w) of K labels, one panel per label titled
    "label score"; the panels share one colour scale."""
    from salgl.figures.common import FONT_TITLE, grid_shape, new_figure

    maps = np.asarray(maps, dtype=np.float32)
    grid = (maps.shape[-2], maps.shape[-1])
    heat = resize_maps(torch.from_numpy(maps), image.shape[:2]).numpy()
    top = colour_limit(heat, prefix + grid[0] * grid[1])
    rows, cols = grid_shape(len(names))
    aspect = image.shape[0] / image.shape[1]
    fig = new_figure(max(cols * PANEL_INCHES + 1.2, MIN_WIDTH_INCHES),
                     rows * PANEL_INCHES * min(max(aspect, 0.5), 2.0) + 1.0,
                     layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    shown = None
    for ax, name, score, one in zip(axes.flat, names, scores, heat, strict=False):
        shown = overlay(ax, image, one, top, f"{name} {float(score):.2f}")
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    colour_key(fig, shown, axes, grid, prefix)
    fig.suptitle(wrapped(title, fig, FONT_TITLE), fontsize=FONT_TITLE)
    return fig


def draw_explanation(path: str | Path, image: Image.Image, maps: np.ndarray,
                     names: Sequence[str], scores: Sequence[float], title: str,
                     prefix: int = 0) -> Path:
    """Write ``image`` with its labels' maps (K, h, w) as a PNG at ``path``, atomically."""
    from salgl.figures.common import save

    fig = explanation_figure(display_image(image), maps, names, scores, title, prefix)
    return save(fig, path)
