"""Training history from DVCLive's metric files: losses, learning rate, selection mAP.

The series are found by what lies under the metrics folder, not by fixed paths: losses are the
files named ``loss_*``, the learning rate ``lr``, and the mAP ``mAP`` in a folder named after
the split it was measured on (``val/`` when the epoch is selected on validation, ``test/``
under the paper's protocol). Any prefix folder above them (``live/val/mAP.tsv``) is accepted.
DVCLive's step is the epoch number, from 1 (salgl.train sets it); the best-so-far line is the
running maximum of the mAP series (files of older versions also hold a ``best_mAP`` copy of
it, which is not read).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from salgl.figures.common import FONT_LABEL, FONT_SMALL, FONT_TITLE, blank, new_figure, save

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Series = tuple[np.ndarray, np.ndarray]
MAIN_LOSSES = ("loss_total", "loss_asl")
# What each logged loss is (salgl.losses, reduced per batch; salgl.engine logs the mean of
# the batch values over the epoch's batches), for the legends.
LOSS_MEANINGS = {
    "loss_total": "loss_total: ASL + scene weight × the two scene terms",
    "loss_asl": "loss_asl: asymmetric loss, mean over the batch's images and labels × 1000",
    "loss_scene_sample": "loss_scene_sample: mean entropy of an image's scene\n"
                         "probabilities (nats; low: each image in one scene)",
    "loss_scene_batch": "loss_scene_batch: (ln K − entropy of the batch's mean\n"
                        "scene probabilities) × 100 (low: every scene used)",
}
ASL_AXIS = "loss per image-label pair × 1000\n(epoch mean of the batch values)"
SCENE_AXIS = "value (epoch mean of the batch values)"
SPLIT_NAMES = {"val": "validation", "test": "test"}
SPLIT_ORDER = ("val", "test")


def _read_metric_tsv(path: Path) -> Series | None:
    """(steps, values) of one DVCLive metric file; the last row wins for a repeated step."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            fields = reader.fieldnames or []
            column = path.stem if path.stem in fields else (fields[-1] if fields else None)
            if column is None or "step" not in fields or column == "step":
                return None
            by_step: dict[int, float] = {}
            for row in reader:
                try:
                    by_step[int(float(row["step"]))] = float(row[column])
                except (TypeError, ValueError):
                    continue
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if not by_step:
        return None
    steps = np.array(sorted(by_step))
    return steps, np.array([by_step[s] for s in steps])


def read_live_metrics(live_metrics_dir: str | Path | None) -> dict[str, Series]:
    """Every DVCLive metric under the folder by name (``train/loss_total``); {} if missing."""
    if live_metrics_dir is None or not Path(live_metrics_dir).is_dir():
        return {}
    root = Path(live_metrics_dir)
    metrics = {}
    for path in sorted(root.rglob("*.tsv")):
        series = _read_metric_tsv(path)
        if series is not None:
            metrics[path.relative_to(root).with_suffix("").as_posix()] = series
    return metrics


def _base(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _folder(name: str) -> str:
    """The folder a metric lies in (``val`` for ``live/val/mAP``; '' at the top)."""
    parts = name.split("/")
    return parts[-2] if len(parts) > 1 else ""


@dataclass
class History:
    """The metric names of each panel, found in a folder's metrics."""

    main_losses: list[str] = field(default_factory=list)
    scene_losses: list[str] = field(default_factory=list)
    lr: list[str] = field(default_factory=list)
    # split folder -> the mAP series' name
    maps: dict[str, str] = field(default_factory=dict)


def find_history(metrics: Mapping[str, Series]) -> History:
    """Sort the metrics into the figure's panels by file name and folder, whatever the prefix."""
    history = History()
    losses = sorted(n for n in metrics if _base(n).startswith("loss_"))
    history.main_losses = sorted((n for n in losses if _base(n) in MAIN_LOSSES),
                                 key=lambda n: (MAIN_LOSSES.index(_base(n)), n))
    history.scene_losses = [n for n in losses if n not in history.main_losses]
    history.lr = sorted(n for n in metrics if _base(n) == "lr")
    found = {_folder(name): name for name in sorted(metrics) if _base(name) == "mAP"}
    order = sorted(found, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 2, s))
    history.maps = {s: found[s] for s in order}
    return history


def split_name(folder: str) -> str:
    """``validation`` for ``val``, ``test`` for ``test``, any other folder by its own name."""
    return SPLIT_NAMES.get(folder, folder)


def _short_names(names: Sequence[str]) -> list[str]:
    """Legend names: what a loss is, or the file name, or the whole metric name where two
    share a file name."""
    bases = [_base(n) for n in names]
    return [LOSS_MEANINGS.get(b, b) if bases.count(b) == 1 else n
            for n, b in zip(names, bases, strict=True)]


def _not_logged(ax: Axes, title: str) -> None:
    ax.set_title(title, fontsize=FONT_LABEL)
    ax.set_axis_off()
    ax.text(0.5, 0.5, "not logged", ha="center", va="center", color="0.5", fontsize=FONT_LABEL,
            transform=ax.transAxes)


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=FONT_LABEL)
    ax.set_xlabel(xlabel, fontsize=FONT_LABEL)
    ax.set_ylabel(ylabel, fontsize=FONT_LABEL)
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)


def _plot_lines(ax: Axes, metrics: Mapping[str, Series], names: Sequence[str], title: str,
                ylabel: str, xlabel: str = "epoch", marker_size: float = 3,
                legend_below: bool = False) -> bool:
    """Lines of the named metrics against epoch (DVCLive's step), or a 'not logged' note;
    True when something was drawn. ``legend_below``: a long legend goes under the axes,
    where it hides no line."""
    if not names:
        _not_logged(ax, title)
        return False
    for name, label in zip(names, _short_names(names), strict=True):
        steps, values = metrics[name]
        ax.plot(steps, values, marker="o", ms=marker_size, lw=1.4, label=label)
    _style(ax, title, xlabel, ylabel)
    if legend_below:
        ax.legend(fontsize=FONT_SMALL, loc="upper center", bbox_to_anchor=(0.5, -0.17),
                  frameon=False)
    else:
        ax.legend(fontsize=FONT_SMALL)
    return True


def _plot_lr(ax: Axes, metrics: Mapping[str, Series], names: Sequence[str]) -> None:
    """The learning rate as logged: once per epoch, after the epoch's last optimiser step."""
    if not _plot_lines(ax, metrics, names, "Learning rate, logged once per epoch",
                       "learning rate", "epoch (lr after its last step; the steps inside an "
                       "epoch,\na warm-up among them, are not logged)", marker_size=4):
        return
    ax.set_ylim(bottom=0)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    if len(names) == 1:
        ax.get_legend().remove()  # one line needs no legend


def _plot_maps(ax: Axes, metrics: Mapping[str, Series],
               maps: Mapping[str, str]) -> None:
    """Each split's mAP per epoch; its best-so-far as a step line; the selected epoch starred."""
    from matplotlib import colormaps

    title = "mAP of the EMA model (interpolated AP)"
    if not maps:
        _not_logged(ax, title)
        return
    colours = colormaps["tab10"]
    for i, (folder, name) in enumerate(maps.items()):
        split, colour = split_name(folder), colours(2 * i % 10)
        steps, values = metrics[name]
        ax.plot(steps, values, marker="o", ms=4, lw=1.6, color=colour, label=f"{split} mAP")
        ax.step(steps, np.maximum.accumulate(values), where="post", ls="--", lw=1.2,
                color=colours(2 * i + 1), label=f"{split} best so far")
        k = int(np.argmax(values))  # first epoch reaching the best: the selected one
        ax.plot(steps[k], values[k], marker="*", ms=13, ls="none", color="black",
                zorder=4, label=f"selected: epoch {steps[k]} ({values[k]:.3f})")
    names = " / ".join(split_name(f) for f in maps)
    _style(ax, f"{names[:1].upper()}{names[1:]} mAP of the EMA model (interpolated AP)",
           "epoch", "mAP")
    ax.legend(fontsize=FONT_SMALL, loc="lower right")


def training_figure(metrics: Mapping[str, Series]) -> Figure | None:
    """Losses, learning rate and selection mAP per epoch in a 2x2 grid; None without history."""
    if not metrics:
        return None
    history = find_history(metrics)
    epochs = max(int(steps.max()) for steps, _ in metrics.values())
    fig = new_figure(11, 9)
    axes = fig.subplots(2, 2).ravel()
    _plot_lines(axes[0], metrics, history.main_losses, "Training loss", ASL_AXIS,
                legend_below=True)
    _plot_lines(axes[1], metrics, history.scene_losses, "Scene regularisers", SCENE_AXIS,
                legend_below=True)
    _plot_lr(axes[2], metrics, history.lr)
    _plot_maps(axes[3], metrics, history.maps)
    selected = [split_name(f) for f in history.maps]
    title = f"Training history, {epochs} epoch{'s' if epochs != 1 else ''}"
    if selected:
        title += f"; epoch selected on {' and '.join(selected)} mAP"
    fig.suptitle(title, fontsize=FONT_TITLE)
    return fig


def plot_training_curves(live_metrics_dir: str | Path | None, out_png: str | Path) -> bool:
    """`training_figure` of a DVCLive metrics folder; False (and a placeholder) without one."""
    fig = training_figure(read_live_metrics(live_metrics_dir))
    if fig is None:
        blank(out_png, "Training curves", "no training history")
        return False
    save(fig, out_png)
    return True
