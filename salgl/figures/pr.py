"""Precision-recall curves: the per-label series for `dvc plots` and one figure of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from salgl.atomic import atomic_path
from salgl.errors import SalglError
from salgl.figures.common import (
    FONT_LABEL,
    FONT_SMALL,
    FONT_TITLE,
    blank,
    new_figure,
    save,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

# The AP the legend shows: the area under the step curve drawn, as sklearn computes it.
AP_VARIANT = "non-interpolated AP"


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


def curve_ap(frame: pd.DataFrame) -> float:
    """Step-wise AP of a recall-ascending curve (sklearn's average_precision_score)."""
    recall = frame["recall"].to_numpy()
    precision = frame["precision"].to_numpy()
    return float(np.sum(np.diff(recall) * precision[1:]))


def _pick_curves(curves: Mapping[str, pd.DataFrame], max_labels: int
                 ) -> list[tuple[str, float]]:
    """The best and worst labels by AP when there are too many curves to read."""
    ranked = sorted(((name, curve_ap(f)) for name, f in curves.items()), key=lambda x: -x[1])
    if len(ranked) <= max_labels:
        return ranked
    top = (max_labels + 1) // 2
    return ranked[:top] + ranked[len(ranked) - (max_labels - top):]


def pr_figure(curves: Mapping[str, pd.DataFrame], max_labels: int = 10) -> Figure:
    """All PR curves in one axes; the top/bottom labels by AP when there are many."""
    from matplotlib import colormaps

    chosen = _pick_curves(curves, max(1, max_labels))
    cmap = colormaps["tab10" if len(chosen) <= 10 else "tab20"]
    fig = new_figure(8.5, 5.5)
    ax = fig.add_subplot()
    top = (len(chosen) + 1) // 2 if len(chosen) < len(curves) else len(chosen)
    for i, (name, ap) in enumerate(chosen):
        frame = curves[name]
        ax.plot(frame["recall"], frame["precision"], drawstyle="steps-pre", lw=1.6,
                ls="-" if i < top else "--", color=cmap(i % cmap.N), label=f"{name} ({ap:.3f})")
    title = "Precision-recall curves"
    if top < len(chosen):
        title += (f": {top} best (solid) and {len(chosen) - top} worst (dashed) "
                  f"of {len(curves)} labels")
    ax.set_title(f"{title}\nlegend: {AP_VARIANT} (area under the step curve, as sklearn's "
                 "average_precision_score)", fontsize=FONT_TITLE)
    ax.set(xlim=(0, 1.01), ylim=(0, 1.02))
    ax.set_xlabel("recall", fontsize=FONT_LABEL)
    ax.set_ylabel("precision", fontsize=FONT_LABEL)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=FONT_SMALL, frameon=False,
              title=f"label ({AP_VARIANT})", title_fontsize=FONT_SMALL)
    return fig


def plot_pr_curves(curves: Mapping[str, pd.DataFrame], out_png: str | Path,
                   max_labels: int = 10) -> Path:
    """`pr_figure` saved to ``out_png``; a placeholder when no label has a positive."""
    if not curves:
        return blank(out_png, "Precision-recall curves", "no label has a positive")
    return save(pr_figure(curves, max_labels), out_png)
