"""Precision-recall curves: the per-label series for `dvc plots` and a figure of one panel per
label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from salgl.atomic import atomic_path
from salgl.errors import SalglError
from salgl.figures.ap import AP_RULE, AP_VARIANT
from salgl.figures.common import (
    FONT,
    FONT_SMALL,
    FONT_TITLE,
    blank,
    grid_shape,
    new_figure,
    save,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CURVE_COLOUR = "tab:blue"
PRIOR_COLOUR = "tab:red"


def _pad_threshold(thresholds: np.ndarray) -> float:
    """Threshold of sklearn's closing (recall 0, precision 1) point: above every score."""
    top = float(thresholds.max()) if thresholds.size else 0.0
    return 1.0 if top < 1.0 else float(np.nextafter(top, np.inf))


def _label_curve(scores: np.ndarray, targets: np.ndarray) -> pd.DataFrame:
    """One label's PR curve with recall ascending (sklearn returns it descending)."""
    import pandas as pd
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(targets, scores)
    thresholds = np.append(thresholds, _pad_threshold(thresholds))
    # sklearn's recall never increases along its output, so reversed it is sorted
    return pd.DataFrame({"recall": recall[::-1], "precision": precision[::-1],
                         "threshold": thresholds[::-1]})


def pr_curves(scores: np.ndarray, targets: np.ndarray, labels: Sequence[str],
              ignore: np.ndarray | None = None) -> dict[str, pd.DataFrame]:
    """PR curve per label that has a positive (ignored pairs left out), for `dvc plots`."""
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 2 or scores.shape[1] != len(labels):
        raise SalglError(f"pr_curves: scores {scores.shape}, targets {targets.shape} and "
                         f"{len(labels)} labels do not match")
    valid = np.ones(targets.shape, bool) if ignore is None else np.asarray(ignore) == 0
    curves = {}
    for c, label in enumerate(labels):
        keep = valid[:, c]
        y = (targets[keep, c] > 0).astype(np.int64)
        if y.sum() > 0:
            curves[str(label)] = _label_curve(scores[keep, c], y)
    return curves


def write_pr_series(curves: Mapping[str, pd.DataFrame], out_csv: str | Path) -> Path:
    """Every label's curve in one long CSV (recall, precision, threshold, label), which
    `dvc plots show` draws as one chart with a line per label (.dvc/plots/pr_overlay.json)."""
    import pandas as pd

    columns = ["recall", "precision", "threshold", "label"]
    frames = [frame.assign(label=name) for name, frame in curves.items()]
    table = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(
        columns=columns)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
    return Path(out_csv)


def curve_ap(frame: pd.DataFrame, interpolated: bool = True) -> float:
    """AP of a recall-ascending curve, as salgl.metrics.average_precision computes it.

    ``interpolated`` (the project's AP, per_label_ap.csv's ``ap``) reads each recall step at
    the best precision at that recall or beyond; False is the plain step-wise area
    (sklearn's average_precision_score, per_label_ap.csv's ``ap_noninterp``).
    """
    recall = frame["recall"].to_numpy()
    precision = interpolated_precision(frame) if interpolated else frame["precision"].to_numpy()
    return float(np.sum(np.diff(recall) * precision[1:]))


def interpolated_precision(frame: pd.DataFrame) -> np.ndarray:
    """Precision made non-increasing in recall: at each point the best at that recall or
    beyond (the all-point rule); the envelope whose area is the interpolated AP."""
    precision = frame["precision"].to_numpy()
    return np.maximum.accumulate(precision[::-1])[::-1]


def curve_prior(frame: pd.DataFrame) -> float:
    """The label's positive rate: precision at the lowest threshold, where every counted
    image is called positive (the no-skill baseline, the AP of random scores)."""
    return float(frame["precision"].iloc[-1])


def _pick_curves(curves: Mapping[str, pd.DataFrame], max_labels: int
                 ) -> list[tuple[str, float]]:
    """Labels by AP, best first; the best and worst when there are more than ``max_labels``."""
    ranked = sorted(((name, curve_ap(f)) for name, f in curves.items()), key=lambda x: -x[1])
    if len(ranked) <= max_labels:
        return ranked
    top = (max_labels + 1) // 2
    return ranked[:top] + ranked[len(ranked) - (max_labels - top):]


def panel_title(name: str, ap: float, prior: float) -> str:
    """A panel's title: the label (wrapped when long), its interpolated AP and its prior."""
    import textwrap

    return "\n".join([*textwrap.wrap(name, 26), f"AP {ap:.3f} · prior {prior:.3f}"])


def _draw_panel(ax: Axes, frame: pd.DataFrame, title: str) -> None:
    """One label: the curve as computed, the interpolated envelope shaded (its area is the AP
    in the title), the positive rate dashed."""
    recall = frame["recall"].to_numpy()
    ax.fill_between(recall, interpolated_precision(frame), step="pre", color=CURVE_COLOUR,
                    alpha=0.2, lw=0)
    ax.plot(recall, frame["precision"], drawstyle="steps-pre", lw=1.2, color=CURVE_COLOUR)
    ax.axhline(curve_prior(frame), color=PRIOR_COLOUR, ls="--", lw=1.1)
    ax.set_title(title, fontsize=FONT)
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=FONT_SMALL)


def _figure_title(shown: int, total: int, width: float) -> str:
    """Which labels the panels are and which AP their titles give, wrapped to fit a figure
    ``width`` inches wide."""
    import textwrap

    if shown < total:
        top = (shown + 1) // 2
        best = "the best" if top == 1 else f"the {top} best"
        worst = {0: "", 1: " and the worst"}.get(shown - top, f" and {shown - top} worst")
        which = f"{best}{worst} of {total} labels by AP"
    else:
        which = f"all {total} label{'s' if total != 1 else ''}, best AP first"
    lines = [f"Precision-recall per label: {which}",
             f"AP = {AP_VARIANT} ({AP_RULE}), as in per_label_ap.png and every metric"]
    chars = max(20, int(width * 72 / (0.6 * FONT_TITLE)))  # a glyph is about 0.6 em wide
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) for line in lines)


WIDE_LEGEND = 9.5  # inches of figure that hold the key in one row


def _legend(fig: Figure, width: float) -> None:
    """One key for every panel, under the grid: in a row, or a column on a narrow figure."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    wide = width >= WIDE_LEGEND
    prior = "prior: the label's positive rate" + (" " if wide else "\n") + (
        "(precision of random scores)")
    handles = [Line2D([], [], color=CURVE_COLOUR, lw=1.2, label="precision-recall curve"),
               Patch(color=CURVE_COLOUR, alpha=0.2, label=f"area = {AP_VARIANT}"),
               Line2D([], [], color=PRIOR_COLOUR, ls="--", lw=1.1, label=prior)]
    fig.legend(handles=handles, loc="outside lower center", ncol=3 if wide else 1,
               fontsize=FONT_SMALL, frameon=False)


def pr_figure(curves: Mapping[str, pd.DataFrame], max_labels: int = 10) -> Figure:
    """One panel per label (up to ``max_labels``: the best and worst by AP when there are
    more), so each curve reads against its own no-skill line; AP and prior in its title."""
    chosen = _pick_curves(curves, max(1, max_labels))
    rows, cols = grid_shape(len(chosen))
    width = max(cols * 2.5 + 0.4, 4.6)
    key = 0 if width >= WIDE_LEGEND else 0.6  # the key's extra lines on a narrow figure
    fig = new_figure(width, rows * 2.5 + 1.3 + key, layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    for ax, (name, ap) in zip(axes.flat, chosen, strict=False):
        _draw_panel(ax, curves[name], panel_title(name, ap, curve_prior(curves[name])))
    for ax in axes.flat[len(chosen):]:
        ax.set_axis_off()
    for ax in axes.flat[max(0, len(chosen) - cols):len(chosen)]:  # each column's lowest
        ax.xaxis.set_tick_params(labelbottom=True)  # shared x hides them above an empty cell
        ax.set_xlabel("recall", fontsize=FONT)
    for ax in axes[:, 0]:
        ax.set_ylabel("precision", fontsize=FONT)
    _legend(fig, width)
    fig.suptitle(_figure_title(len(chosen), len(curves), width), fontsize=FONT_TITLE)
    return fig


def plot_pr_curves(curves: Mapping[str, pd.DataFrame], out_png: str | Path,
                   max_labels: int = 10) -> Path:
    """`pr_figure` saved to ``out_png``; a placeholder when no label has a positive."""
    if not curves:
        return blank(out_png, "Precision-recall curves", "no label has a positive")
    return save(pr_figure(curves, max_labels), out_png)
