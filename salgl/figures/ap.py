"""Per-label average precision against the label prior."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from salgl.errors import SalglError
from salgl.figures.common import (
    FONT,
    FONT_LABEL,
    FONT_SMALL,
    FONT_TITLE,
    blank,
    new_figure,
    save,
    value_column,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from salgl.predictions import Predictions

# The `ap` column of per_label_ap.csv and salgl.metrics.average_precision's default.
AP_VARIANT = "interpolated AP"
AP_RULE = "all-point rule: precision made non-increasing in recall"


def read_per_label(per_label: str | Path | pd.DataFrame) -> pd.DataFrame:
    """The per-label AP table; empty AP cells (labels without positives) become NaN."""
    import pandas as pd

    if isinstance(per_label, pd.DataFrame):
        frame = per_label.copy()
    else:
        frame = pd.read_csv(per_label, keep_default_na=False, dtype={"label": str},
                            na_values={"ap": [""], "ap_noninterp": [""]})
    missing = {"label", "ap", "prevalence"} - set(frame.columns)
    if missing:
        raise SalglError(f"{per_label if not isinstance(per_label, pd.DataFrame) else 'table'}:"
                         f" missing columns {sorted(missing)}")
    frame["ap"] = pd.to_numeric(frame["ap"], errors="coerce")
    frame["prevalence"] = pd.to_numeric(frame["prevalence"], errors="coerce")
    return frame


def per_label_frame(predictions: Predictions, labels: Sequence[str]) -> pd.DataFrame:
    """The per-label AP table computed from predictions, for when no CSV is at hand."""
    import pandas as pd

    from salgl.metrics import average_precision

    targets, ignore = predictions.targets, predictions.ignore
    valid = np.ones(targets.shape) if ignore is None else 1 - ignore
    positives = (targets * valid).sum(0)
    return pd.DataFrame({"label": list(labels),
                         "ap": average_precision(predictions.scores, targets, ignore),
                         "positives": positives,
                         "prevalence": positives / np.maximum(valid.sum(0), 1)})


BAR_COLOUR = "#4c92c3"


def per_label_figure(frame: pd.DataFrame) -> Figure | None:
    """Bars of AP by label (best on top) against the label prior and the mean; None if empty."""
    scored = frame.dropna(subset=["ap"]).sort_values("ap", kind="stable")
    skipped = len(frame) - len(scored)
    if scored.empty:
        return None
    n = len(scored)
    height = min(0.28 * n + 2.6, 40)
    fig = new_figure(8, height)
    ax = fig.add_subplot()
    y = np.arange(n)
    ax.barh(y, scored["ap"], color=BAR_COLOUR, label=AP_VARIANT)
    ax.scatter(scored["prevalence"], y, marker="|", s=160, color="tab:red", zorder=3,
               label="label prior (prevalence ≈ AP of random scores)")
    mean = float(scored["ap"].mean())
    ax.axvline(mean, color="k", ls="--", lw=1, label=f"mean ({AP_VARIANT}) {mean:.3f}")
    ax.set_yticks(y, scored["label"].astype(str), fontsize=FONT_SMALL if n > 30 else FONT)
    ax.set(xlim=(0, 1), ylim=(-0.6, n - 0.4))
    ax.set_xlabel(f"average precision ({AP_VARIANT}, {AP_RULE})", fontsize=FONT_LABEL)
    title = f"Per-label {AP_VARIANT} ({n} labels)"
    if skipped:
        title += f"; {skipped} without positives left out"
    ax.set_title(title, fontsize=FONT_TITLE)
    ax.grid(axis="x", alpha=0.3)
    if n <= 60:
        value_column(ax, scored["ap"].to_numpy(), "{:.3f}", "AP")  # as pr_curves.png
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.7 / (height - 1.2)),
              ncol=3, fontsize=FONT_SMALL, frameon=False)
    return fig


def plot_per_label_ap(per_label: str | Path | pd.DataFrame, out_png: str | Path) -> Path:
    """`per_label_figure` of a per-label AP table (CSV path or frame) saved to ``out_png``."""
    fig = per_label_figure(read_per_label(per_label))
    if fig is None:
        return blank(out_png, f"Per-label {AP_VARIANT}", "no label has a positive")
    return save(fig, out_png)
