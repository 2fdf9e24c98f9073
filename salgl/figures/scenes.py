"""The learned scenes in numbers: each scene's top labels, and learned against true scenes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from salgl.figures.common import (
    FONT,
    FONT_LABEL,
    FONT_SMALL,
    FONT_TITLE,
    MEMORY_NOTE,
    annotate,
    blank,
    grid_shape,
    new_figure,
    save,
    value_column,
)
from salgl.figures.memory import as_cooccurrence, occurrences, scene_label_shares

if TYPE_CHECKING:
    from matplotlib.figure import Figure



# --------------------------------------------------------------------------- top labels


def shown_labels(top: int, label_count: int) -> tuple[int, str]:
    """How many labels each panel ranks, and the title's words for them: every label,
    ranked, when ``top`` reaches the label count (the ranking then has no "top")."""
    if top >= label_count:
        return label_count, f"All {label_count} label{'s' if label_count != 1 else ''}"
    return top, f"Top {top} of {label_count} labels"


def top_labels_figure(memory: np.ndarray, labels: Sequence[str], top: int = 10) -> Figure:
    """Per scene, the labels with the largest share of their occurrences in it, against 1/K;
    each bar's share in a column right of its panel, clear of the bars and the 1/K line."""
    shares = scene_label_shares(memory)
    scenes = memory.shape[0]
    rows, cols = grid_shape(scenes)
    count, which = shown_labels(max(1, top), len(labels))
    xmax = min(1.0, float(shares.max(initial=0.0)) * 1.2) or 1.0
    uniform = 1 / scenes
    fig = new_figure(cols * 4.8, rows * (0.3 * count + 1.5) + 1.0, layout="constrained")
    axes = []
    for k in range(scenes):
        ax = fig.add_subplot(rows, cols, k + 1)
        axes.append(ax)
        ax.set_title(f"scene {k} ({occurrences(memory, k):,.0f} counts)", fontsize=FONT_LABEL)
        ax.set_xlim(0, max(xmax, uniform * 1.1))
        ax.tick_params(axis="x", labelsize=FONT_SMALL)
        if k + cols >= scenes:
            ax.set_xlabel("share of the label's occurrences in this scene", fontsize=FONT)
        if occurrences(memory, k) <= 0:
            ax.set_yticks([])
            ax.text(0.5, 0.5, "empty memory\n(no label occurrences)", ha="center", va="center",
                    color="0.3", fontsize=FONT_LABEL, transform=ax.transAxes)
            continue
        order = np.argsort(-shares[k], kind="stable")[:count][::-1]
        values = shares[k][order]
        ax.barh(np.arange(len(order)), values, color="tab:blue", alpha=0.85)
        value_column(ax, values, title="share")
        ax.set_ylim(-0.6, len(order) - 0.4)
        ax.axvline(uniform, color="tab:red", ls="--", lw=1.2,
                   label=f"1/K = {uniform:.2f}: the share if scenes did not matter")
        ax.set_yticks(np.arange(len(order)), [str(labels[i]) for i in order], fontsize=FONT)
    drawn = [ax for ax in axes if ax.lines]  # one legend for the 1/K line of every panel
    if drawn:
        fig.legend(*drawn[0].get_legend_handles_labels(), loc="outside lower center",
                   fontsize=FONT, frameon=False)
    fig.suptitle(f"{which} per scene, ranked by the share of their occurrences that fell "
                 f"in it (K = {scenes} scenes)\nscene totals: {MEMORY_NOTE}", fontsize=FONT_TITLE)
    return fig


def plot_scene_top_labels(cooccurrence: Any, labels: Sequence[str], out_png: str | Path,
                          top: int = 10) -> Path:
    """For readers who prefer numbers: `top_labels_figure` saved to ``out_png``."""
    memory = as_cooccurrence(cooccurrence, len(labels))
    return save(top_labels_figure(memory, labels, top), out_png)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def matching_figure(match: Mapping[str, Any]) -> Figure:
    """Row-normalised learned x true contingency with counts, NMI and ARI in the title."""
    table = np.asarray(match["contingency"], dtype=np.float64)
    share = table / np.maximum(table.sum(1, keepdims=True), 1)
    rows, cols = table.shape
    fig = new_figure(min(max(6.5, 0.8 * cols + 3.5), 30), min(max(4.2, 0.5 * rows + 2.2), 30))
    ax = fig.add_subplot()
    image = ax.imshow(share, vmin=0, vmax=1, cmap="Blues", aspect="auto")
    names = match.get("true_scene_names") or [str(k) for k in range(cols)]
    ax.set_xticks(np.arange(cols), names, rotation=45 if cols > 6 else 0, ha="right"
                  if cols > 6 else "center", fontsize=FONT)
    ax.set_yticks(np.arange(rows), [f"learned {k}" for k in range(rows)], fontsize=FONT)
    ax.set_xlabel("true scene", fontsize=FONT_LABEL)
    ax.set_ylabel("learned scene (argmax)", fontsize=FONT_LABEL)
    if rows * cols <= 400:
        annotate(ax, table.astype(np.int64).astype(str), image.cmap(image.norm(share)), FONT)
    bar = fig.colorbar(image, ax=ax)
    bar.set_label("share of the learned scene's images", fontsize=FONT_LABEL)
    ax.set_title(f"Learned vs true scenes: NMI {_fmt(match.get('nmi'))}, "
                 f"ARI {_fmt(match.get('ari'))} ({match.get('num_images', int(table.sum()))} "
                 "test images; cells: image counts)", fontsize=FONT_LABEL)
    return fig


def plot_scene_matching(match: Mapping[str, Any], out_png: str | Path) -> Path:
    """`matching_figure` saved to ``out_png``; a placeholder when no image has a known scene."""
    table = np.asarray(match["contingency"], dtype=np.float64)
    if table.size == 0 or table.sum() == 0:
        return blank(out_png, "Learned vs true scenes", "no test image with a known scene")
    return save(matching_figure(match), out_png)
