"""Figures and plot series of a trained SALGL model: the public API of ``salgl.figures``.

Each figure family lives in its own module of ``salgl.figures``; this module re-exports the
functions other code and the stage scripts use, so ``from salgl.plots import make_all_plots``
keeps working.
"""

from __future__ import annotations

from salgl.figures import load_predictions_npz, make_all_plots, model_figures
from salgl.figures.ap import per_label_frame, plot_per_label_ap, read_per_label
from salgl.figures.clouds import plot_scene_clouds
from salgl.figures.common import DPI, EPS, grid_shape, safe_label
from salgl.figures.curves import plot_training_curves, read_live_metrics
from salgl.figures.heatmaps import plot_group_heatmaps, plot_scene_heatmaps
from salgl.figures.memory import as_cooccurrence, conditional_matrix, scene_label_shares
from salgl.figures.pr import curve_ap, plot_pr_curves, pr_curves, write_pr_series
from salgl.figures.scenes import (
    plot_scene_matching,
    plot_scene_top_labels,
    read_scenes_tsv,
    scene_matching,
    scene_names,
    true_scenes_for,
)

__all__ = [
    "DPI", "EPS", "as_cooccurrence", "conditional_matrix", "curve_ap", "grid_shape",
    "load_predictions_npz", "make_all_plots", "model_figures", "per_label_frame",
    "plot_group_heatmaps", "plot_per_label_ap", "plot_pr_curves", "plot_scene_clouds",
    "plot_scene_heatmaps", "plot_scene_matching", "plot_scene_top_labels",
    "plot_training_curves", "pr_curves", "read_live_metrics", "read_per_label",
    "read_scenes_tsv", "safe_label", "scene_label_shares", "scene_matching", "scene_names",
    "true_scenes_for", "write_pr_series",
]
