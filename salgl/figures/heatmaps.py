"""Heatmaps of the scenes' conditional label probabilities: per scene, and per label group.

The diagonal P(i | i) is 1 by construction: it is drawn grey and kept off the colour scale,
whose top is the largest off-diagonal probability, so the informative range gets the colours.
One scale serves every panel of a figure (and every scene's figure), so colours compare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from salgl.errors import SalglError
from salgl.figures.common import (
    FONT_LABEL,
    FONT_SMALL,
    FONT_TITLE,
    MEMORY_NOTE,
    annotate_image,
    blank,
    grid_shape,
    heat_cmap,
    heatmap_axes,
    memory_counts,
    new_figure,
    nice_max,
    offdiagonal_max,
    safe_label,
    save,
)
from salgl.figures.memory import as_cooccurrence, conditional_matrix, occurrences

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DIAGONAL_NOTE = "diagonal P(i | i) = 1 grey, off the colour scale"


def colour_limit(probs: np.ndarray) -> float:
    """The top of the colour scale: the largest off-diagonal probability, rounded up."""
    return nice_max(min(1.0, offdiagonal_max(np.clip(probs, 0, 1))))


def _masked_image(ax: Axes, probs: np.ndarray, vmax: float, numbers: bool):
    """``probs`` with the diagonal masked (grey) on a 0..vmax scale, numbers on the cells."""
    n = probs.shape[0]
    diagonal = np.eye(n, dtype=bool)
    values = probs.clip(0, 1)
    image = ax.imshow(np.ma.masked_where(diagonal, values), vmin=0, vmax=vmax, cmap=heat_cmap())
    if numbers:
        annotate_image(ax, image, values, skip=diagonal)
    return image


def scene_heatmap_figure(probs: np.ndarray, labels: Sequence[str], title: str,
                         vmax: float) -> Figure:
    """One scene's P(j | i) for every label pair, with a colourbar."""
    n = len(labels)
    side = min(max(5.5, 0.36 * n + 3), 30)
    fig = new_figure(side + 1.4, side)
    ax = fig.add_subplot()
    image = _masked_image(ax, probs, vmax, numbers=n <= 15)
    heatmap_axes(ax, labels, "label j", "given label i")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label(f"P(j | i, scene), 0 to {vmax:.2f} (largest off the diagonal)",
                  fontsize=FONT_LABEL)
    ax.set_title(title, fontsize=FONT_LABEL)
    return fig


def scene_title(k: int, total: float) -> str:
    """What a scene heatmap shows, and what its count is: memory counts, not images."""
    return (f"Scene {k}: P(label j | label i, scene {k}); {DIAGONAL_NOTE}\n"
            f"from {memory_counts(total)}")


# Below this many occurrence counts per label on average, a scene's P(j | i) is noise (a
# model whose memory barely filled, e.g. an EMA still near its start): said, not drawn.
MIN_COUNTS_PER_LABEL = 5


def plot_scene_heatmaps(cooccurrence: Any, labels: Sequence[str],
                        out_dir: str | Path) -> list[Path]:
    """One PNG per learned scene of P(label j | label i, scene k); empty scenes get a blank."""
    memory = as_cooccurrence(cooccurrence, len(labels))
    probs = conditional_matrix(memory)
    filled = [k for k in range(memory.shape[0]) if occurrences(memory, k) > 0]
    vmax = colour_limit(probs[filled]) if filled else 1.0
    out_dir = Path(out_dir)
    written = []
    for k in range(memory.shape[0]):
        path = out_dir / f"scene_{k}_cooccurrence.png"
        total = occurrences(memory, k)
        if total < MIN_COUNTS_PER_LABEL * len(labels):
            reason = ("empty memory (no label occurrences)" if total <= 0 else
                      f"only {memory_counts(total)}: too few to estimate\nP(j | i) "
                      "(an untrained or barely trained model)")
            written.append(blank(path, f"Scene {k}: label co-occurrence", reason))
            continue
        written.append(save(scene_heatmap_figure(probs[k], labels, scene_title(k, total), vmax),
                            path))
    return written


def group_indices(labels: Sequence[str], groups: Mapping[str, Sequence[str]],
                  where: str) -> dict[str, list[int]]:
    """Each group's label indices; SalglError naming ``where`` for a label the model lacks."""
    index = {str(name): i for i, name in enumerate(labels)}
    chosen = {}
    for group, names in groups.items():
        missing = [n for n in names if n not in index]
        if missing:
            raise SalglError(f"{where}.{group}: label {missing[0]!r} is not one of the "
                             "model's labels")
        chosen[str(group)] = [index[n] for n in names]
    return chosen


def group_figure(memory: np.ndarray, probs: np.ndarray, labels: Sequence[str],
                 idx: Sequence[int], group: str) -> Figure:
    """The paper's figure for one label group: its P(j | i) in every scene, one shared scale."""
    scenes = memory.shape[0]
    rows, cols = grid_shape(scenes)
    n = len(idx)
    side = max(3.0, 0.5 * n + 1.5)
    fig = new_figure(cols * side + 1.3, rows * side + 0.9, layout="compressed")
    names = [str(labels[i]) for i in idx]
    blocks = probs[:, idx][:, :, idx]
    filled = [k for k in range(scenes) if occurrences(memory, k) > 0]
    vmax = colour_limit(blocks[filled]) if filled else 1.0
    axes, image = [], None
    for k in range(scenes):
        ax = fig.add_subplot(rows, cols, k + 1)
        axes.append(ax)
        total = occurrences(memory, k)
        ax.set_title(f"scene {k} ({total:,.0f} counts)", fontsize=FONT_LABEL)
        if total > 0:
            image = _masked_image(ax, blocks[k], vmax, numbers=n <= 10)
        else:  # all grey, the same size as its neighbours
            ax.imshow(np.ma.masked_all((n, n)), vmin=0, vmax=vmax, cmap=heat_cmap())
            ax.text(0.5, 0.5, "empty memory", ha="center", va="center", color="0.3",
                    fontsize=FONT_LABEL, transform=ax.transAxes)
        heatmap_axes(ax, names, "", "")
        ax.tick_params(labelleft=k % cols == 0, labelbottom=k + cols >= scenes)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.8, aspect=30)
        bar.set_label(f"P(column label | row label, scene), 0 to {vmax:.2f}",
                      fontsize=FONT_LABEL)
        bar.ax.tick_params(labelsize=FONT_SMALL + 1)
    fig.suptitle(f"{group}: P(column label | row label, scene); {DIAGONAL_NOTE}\n"
                 f"scene totals: {MEMORY_NOTE}", fontsize=FONT_TITLE)
    return fig


def plot_group_heatmaps(cooccurrence: Any, labels: Sequence[str],
                        groups: Mapping[str, Sequence[str]], out_dir: str | Path,
                        where: str = "plots.label_groups") -> list[Path]:
    """Per label group, `group_figure` saved as ``group_<safe name>.png``."""
    memory = as_cooccurrence(cooccurrence, len(labels))
    probs = conditional_matrix(memory)
    written = []
    for group, idx in group_indices(labels, groups, where).items():
        fig = group_figure(memory, probs, labels, idx, group)
        written.append(save(fig, Path(out_dir) / f"group_{safe_label(group)}.png"))
    return written
