"""Helpers every figure family shares: figure creation, atomic save, grids, colours, fonts.

Figures are drawn on matplotlib's Agg canvas without pyplot, so no GUI backend is touched and
nothing is kept in pyplot's figure registry; every PNG is written atomically. matplotlib is
imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from salgl.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

DPI = 110
EPS = 1e-8

# Font sizes in points; at DPI 110 the smallest is about 12 pixels high, readable as saved.
FONT_SMALL = 8  # cell numbers, legends, tick labels of crowded axes
FONT = 9  # tick labels, axis labels of small panels
FONT_LABEL = 10  # axis labels, panel titles
FONT_TITLE = 11  # figure titles

# Heatmaps of probabilities and shares: one sequential map; masked cells (the diagonal) grey.
HEAT_CMAP = "viridis"
MASKED_GREY = "0.85"


def new_figure(width: float, height: float, layout: str | None = None) -> Figure:
    """A Figure on an Agg canvas: no pyplot state, freed as soon as it is dropped.

    ``layout`` is None for ``tight_layout`` when saved, or a matplotlib layout engine:
    "constrained" places a legend or colourbar shared by several panels, "compressed" does so
    for a grid of square heatmaps.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def lay_out(fig: Figure) -> Figure:
    """Place the figure's parts as saving will: tight layout unless it has its own engine."""
    import warnings

    if fig.get_layout_engine() is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # tight_layout on very long tick labels
            fig.tight_layout()
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    """Lay out, write atomically (the temporary name ends in .tmp, hence format=) and release."""
    path = Path(path)
    lay_out(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    fig.clear()
    return path


def blank(path: str | Path, title: str, message: str) -> Path:
    """A titled placeholder, so a figure the pipeline expects always exists."""
    fig = new_figure(6, 3.5)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, fontsize=FONT_TITLE)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="0.4",
            transform=ax.transAxes)
    return save(fig, path)


def safe_label(name: str) -> str:
    """A file-name-safe form of a label: lowercase, every non-alphanumeric as ``_``."""
    return re.sub(r"[^a-z0-9]", "_", str(name).lower()) or "label"


def grid_shape(count: int) -> tuple[int, int]:
    """(rows, columns) for ``count`` panels: the fewest empty cells, then the squarest grid.

    4 panels -> 2x2, 3 -> 1x3, 6 -> 2x3, 8 -> 2x4, 9 -> 3x3; never more rows than columns.
    """
    if count <= 1:
        return 1, 1
    low = math.ceil(math.sqrt(count))
    best = None
    for cols in range(low, min(count, low + 2) + 1):
        rows = math.ceil(count / cols)
        key = (rows * cols - count, cols - rows)
        if best is None or key < best[0]:
            best = (key, (rows, cols))
    assert best is not None
    return best[1]


def heat_cmap() -> Colormap:
    """The heatmap colour map with masked cells drawn grey."""
    from matplotlib import colormaps

    return colormaps[HEAT_CMAP].with_extremes(bad=MASKED_GREY)


def nice_max(value: float, step: float = 0.05) -> float:
    """``value`` rounded up to a multiple of ``step`` (at least ``step``), for a colour limit."""
    return max(step, math.ceil(round(value / step, 6)) * step)


def offdiagonal_max(matrices: np.ndarray) -> float:
    """The largest value off the diagonal of one (C, C) or a stack of (..., C, C) matrices."""
    matrices = np.asarray(matrices, dtype=np.float64)
    n = matrices.shape[-1]
    if n < 2:
        return 0.0
    off = ~np.eye(n, dtype=bool)
    return float(np.nanmax(matrices[..., off]))


def text_colour(rgba: Sequence[float]) -> str:
    """Black or white, whichever reads better on a cell of this colour (relative luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def annotate(ax: Axes, texts: np.ndarray, colours: np.ndarray, size: float = FONT_SMALL
             ) -> None:
    """Write a text per cell (empty texts are skipped) in a colour that reads on the cell."""
    for (i, j), text in np.ndenumerate(texts):
        if text:
            ax.text(j, i, text, ha="center", va="center", fontsize=size,
                    color=text_colour(colours[i, j]))


def annotate_image(ax: Axes, image, values: np.ndarray, fmt: str = "{:.2f}",
                   skip: np.ndarray | None = None, size: float = FONT_SMALL) -> None:
    """Numbers on the cells of an ``imshow`` image, coloured against the cell's own colour."""
    colours = image.cmap(image.norm(np.asarray(values, dtype=np.float64)))
    texts = np.vectorize(fmt.format, otypes=[object])(values)
    if skip is not None:
        texts[skip] = ""
    annotate(ax, texts, colours, size)


def value_column(ax: Axes, values: Sequence[float], fmt: str = "{:.2f}", title: str = ""
                 ) -> None:
    """Each horizontal bar's number in a column just right of the axes, level with its bar
    (bar i at y = i): there no bar, marker or reference line inside the axes can run into it,
    as they can into a number printed at a bar's end."""
    where = ax.get_yaxis_transform()  # x in axes fractions, y in data
    for yi, value in enumerate(values):
        ax.text(1.015, yi, fmt.format(value), transform=where, ha="left", va="center",
                fontsize=FONT_SMALL, clip_on=False)
    if title:
        ax.text(1.015, 1.0, title, transform=ax.transAxes, ha="left", va="bottom",
                fontsize=FONT_SMALL, clip_on=False)


def heatmap_axes(ax: Axes, labels: Sequence[str], xlabel: str, ylabel: str) -> None:
    """Label names on both axes; the figure grows with the labels, so the font need not shrink."""
    n = len(labels)
    size = FONT if n <= 20 else FONT_SMALL
    ax.set_xticks(np.arange(n), [str(s) for s in labels], rotation=90, fontsize=size)
    ax.set_yticks(np.arange(n), [str(s) for s in labels], fontsize=size)
    ax.set_xlabel(xlabel, fontsize=FONT_LABEL)
    ax.set_ylabel(ylabel, fontsize=FONT_LABEL)


MEMORY_NOTE = "co-occurrence memory counts, accumulated over training"


def memory_counts(total: float) -> str:
    """What a scene's memory total is: counts summed over every training step, not images."""
    return f"{total:,.0f} {MEMORY_NOTE}"
