"""Where the model looks: a few test images with the label-attention maps of their top labels.

The maps are the model's own label attention (salgl.explain; what they show and what they do
not: docs/method-notes.md, "What the explanation maps show"). The images are chosen without
looking at the model: the first test images, in the order of test.tsv, that have at least
MIN_POSITIVES positive labels (then, when too few have, the next test images in order), so
every run of the stage draws the same images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from salgl.figures.common import FONT_SMALL, FONT_TITLE, new_figure, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger("salgl")

IMAGES = 4  # rows of the grid
TOP_LABELS = 3  # maps per image: its highest-scoring labels
MIN_POSITIVES = 2


@dataclass
class ExplainInputs:
    """What the figure needs: the loaded model, its file's info and the prepared test split."""

    model: Any  # a model of salgl.model, loaded with salgl.checkpoint.load_model
    info: Any  # its salgl.checkpoint.ModelInfo
    split: Any  # the prepared test split (salgl.data.prepared.Split)


def chosen_images(targets: np.ndarray, ignore: np.ndarray | None, least: int = MIN_POSITIVES
                  ) -> np.ndarray:
    """Every image index, those with at least ``least`` positive (scored) labels first, each
    group in split order."""
    positive = np.asarray(targets) == 1
    if ignore is not None:
        positive &= np.asarray(ignore) != 1
    return np.argsort(~(positive.sum(1) >= least), kind="stable")


def _read_images(split, order: np.ndarray, count: int) -> list[tuple[int, Any]]:
    """The first ``count`` images in ``order`` that decode, as (index, PIL image)."""
    from salgl.data.decode import ImageReadError, open_rgb

    found = []
    for index in order:
        try:
            found.append((int(index), open_rgb(split.paths[index])))
        except ImageReadError as exc:
            log.warning("explanations.png: left out %s: %s", split.paths[index], exc.reason)
        if len(found) == count:
            break
    return found


def _true_labels(labels: Sequence[str], targets: np.ndarray) -> str:
    names = [labels[i] for i in np.flatnonzero(np.asarray(targets) == 1)]
    return ", ".join(names) if names else "none"


def grid_figure(rows: list[dict], grid: tuple[int, int], prefix: int) -> Figure:
    """One row per image: the image with its true labels, then one map per top label
    ("label score"), all on one colour scale."""
    import torch

    from salgl.explain import colour_key, colour_limit, overlay, resize_maps

    top_k = max(len(row["names"]) for row in rows)
    heats = [resize_maps(torch.from_numpy(row["maps"]), row["image"].shape[:2]).numpy()
             for row in rows]
    top = max(colour_limit(h, prefix + grid[0] * grid[1]) for h in heats)
    fig = new_figure(2.3 * (top_k + 1) + 1.2, 2.3 * len(rows) + 1.1, layout="constrained")
    axes = fig.subplots(len(rows), top_k + 1, squeeze=False)
    shown = None
    for axes_row, row, heat in zip(axes, rows, heats, strict=True):
        overlay(axes_row[0], row["image"], None, top, f"{row['title']}\ntrue: {row['truth']}")
        axes_row[0].title.set_fontsize(FONT_SMALL)
        for ax, name, score, one in zip(axes_row[1:], row["names"], row["scores"], heat,
                                        strict=False):
            shown = overlay(ax, row["image"], one, top, f"{name} {score:.2f}")
        for ax in axes_row[1 + len(row["names"]):]:
            ax.set_axis_off()
    colour_key(fig, shown, axes, grid, prefix)
    fig.suptitle(f"Label attention of the top {top_k} labels on {len(rows)} test images",
                 fontsize=FONT_TITLE)
    return fig


def plot_explanations(inputs: ExplainInputs, path: str | Path, count: int = IMAGES,
                      top_k: int = TOP_LABELS) -> Path | None:
    """Draw the grid into ``path``; None (with one log line) when the model has no label
    attention or no test image can be read."""
    import torch

    from salgl.explain import display_image, label_maps
    from salgl.inference import transform_for

    model, info, split = inputs.model, inputs.info, inputs.split
    if info.config.head != "salgl":
        log.info("explanations.png: not drawn, the %s head has no label attention",
                 info.config.head)
        return None
    found = _read_images(split, chosen_images(split.targets, split.ignore), count)
    if not found:
        log.info("explanations.png: not drawn, no test image could be read")
        return None
    transform = transform_for(info)
    device = next(model.parameters()).device
    batch = torch.stack([transform(image) for _, image in found]).to(device)
    result = label_maps(model, batch)
    k = min(top_k, result.scores.shape[1])
    scores, top = result.scores.topk(k, dim=1)  # (n, k), highest first
    maps = result.maps[torch.arange(len(found))[:, None], top].numpy()  # (n, k, h, w)
    labels = info.labels
    rows = [{"image": display_image(image), "title": Path(split.paths[index]).name,
             "truth": _true_labels(labels, split.targets[index]),
             "names": [labels[j] for j in top[n].tolist()], "scores": scores[n].tolist(),
             "maps": maps[n]} for n, (index, image) in enumerate(found)]
    return save(grid_figure(rows, result.grid, result.prefix), path)
