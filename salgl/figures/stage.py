"""Every figure of the plots stage, into one folder: training curves, per-label AP,
precision-recall series and curves, the figures of the scenes' co-occurrence memory, and the
label-attention maps of a few test images."""


from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from salgl.errors import SalglError
from salgl.figures.ap import per_label_frame, plot_per_label_ap
from salgl.figures.clouds import plot_scene_clouds
from salgl.figures.curves import plot_training_curves
from salgl.figures.explain import ExplainInputs, plot_explanations
from salgl.figures.heatmaps import group_indices, plot_group_heatmaps, plot_scene_heatmaps
from salgl.figures.memory import as_cooccurrence
from salgl.figures.pr import plot_pr_curves, pr_curves, write_pr_series
from salgl.figures.scenes import plot_scene_matching, plot_scene_top_labels
from salgl.output_rules import check_dir_output, remove_own
from salgl.predictions import Predictions
from salgl.scene_match import read_scenes_tsv, scene_matching, scene_names, true_scenes_for

_SCENE_FILE = re.compile(r"scene_\d+_(cooccurrence|cloud)\.png")


def model_figures(cooccurrence: Any, labels: Sequence[str], out_dir: str | Path,
                  groups: Mapping[str, Sequence[str]] | None = None, top: int = 10,
                  cloud_words: int = 40, where: str = "plots.label_groups") -> list[Path]:
    """Every figure drawn from a model's scene memory alone (works for imported models too)."""
    out = Path(out_dir)
    memory = as_cooccurrence(cooccurrence, len(labels))
    if groups:
        group_indices(labels, groups, where)  # a misspelt label fails before any figure
    out.mkdir(parents=True, exist_ok=True)
    figures = plot_scene_heatmaps(memory, labels, out)
    figures += plot_scene_clouds(memory, labels, out, cloud_words)
    figures.append(plot_scene_top_labels(memory, labels, out / "scene_top_labels.png", top))
    if groups:
        figures += plot_group_heatmaps(memory, labels, groups, out, where)
    return figures


def _remove_stale(out_dir: Path, keep: set[Path]) -> None:
    """Drop per-scene figures of an earlier run with more scenes, so the folder is consistent."""
    for path in out_dir.glob("scene_*.png"):
        if (_SCENE_FILE.fullmatch(path.name) or path.name == "scene_matching.png") \
                and path not in keep:
            path.unlink()


def _scene_match_for(predictions: Predictions, scenes_tsv: str | Path,
                     num_learned: int) -> dict[str, Any]:
    """Learned (argmax) vs true scenes of the test images listed in scenes.tsv."""
    if predictions.scene_probs is None or predictions.paths is None:
        raise SalglError("scene matching needs scene_probs and paths in the predictions file")
    true = true_scenes_for(predictions.paths, scenes_tsv)
    if not (true >= 0).any():
        raise SalglError(f"{scenes_tsv}: none of the {true.size} test images is listed")
    learned = predictions.scene_probs.argmax(1)
    names = scene_names(read_scenes_tsv(scenes_tsv))
    match = scene_matching(learned, true, names, num_learned=num_learned)
    match["num_unmatched"] = int((true < 0).sum())
    return match


def make_all_plots(predictions_npz: str | Path, per_label_csv: str | Path | None,
                   cooccurrence: Any, live_metrics_dir: str | Path | None, out_dir: str | Path,
                   scenes_tsv: str | Path | None = None, pr_labels: int = 10,
                   cloud_words: int = 40, groups: Mapping[str, Sequence[str]] | None = None,
                   top_labels: int = 10, where: str = "plots.label_groups",
                   curves_png: str | Path | None = None,
                   explain: ExplainInputs | None = None) -> dict[str, Any]:
    """Every figure of the plots stage into ``out_dir``; returns figure names and scene match.

    ``curves_png`` puts the training-curves figure elsewhere: the pipeline keeps it out of
    the folder `dvc plots show` draws, which has the interactive curves already. ``explain``
    (the model and the test split) adds explanations.png, the label-attention maps of a few
    test images; when none is drawn (no ``explain``, a model without label attention), an
    earlier run's explanations.png is removed. ``out_dir``
    must hold nothing but what the plots stage writes (the command line checks it before
    any work, and so does this, before the first figure); only salgl's own earlier files
    are ever removed from it, and no link in it is followed."""
    out = Path(out_dir)
    check_dir_output(out, "figures")
    out.mkdir(parents=True, exist_ok=True)
    predictions = Predictions.load(predictions_npz)
    labels = predictions.label_names()
    curves = Path(curves_png) if curves_png is not None else out / "training_curves.png"
    plot_training_curves(live_metrics_dir, curves)
    if curves != out / "training_curves.png":
        remove_own(out, "figures", under="training_curves.png")  # where earlier versions put it
    figures = [curves]
    per_label = per_label_csv if per_label_csv is not None else per_label_frame(predictions, labels)
    figures.append(plot_per_label_ap(per_label, out / "per_label_ap.png"))
    curves = pr_curves(predictions.scores, predictions.targets, labels, predictions.ignore)
    series = [write_pr_series(curves, out / "pr_curves.csv")]
    remove_own(out, "figures", under="pr")  # per-label series of earlier versions
    figures.append(plot_pr_curves(curves, out / "pr_curves.png", pr_labels))
    drawn = plot_explanations(explain, out / "explanations.png") if explain else None
    if drawn is not None:
        figures.append(drawn)
    else:
        remove_own(out, "figures", under="explanations.png")  # of an earlier run
    scene_figures: list[Path] = []
    scene_probs = predictions.scene_probs
    num_learned = scene_probs.shape[1] if scene_probs is not None else 0
    if cooccurrence is not None:
        memory = as_cooccurrence(cooccurrence, len(labels))
        num_learned = max(num_learned, memory.shape[0])
        scene_figures += model_figures(memory, labels, out, groups, top_labels, cloud_words,
                                       where)
    match = None
    if scenes_tsv is not None:
        match = _scene_match_for(predictions, scenes_tsv, num_learned)
        scene_figures.append(plot_scene_matching(match, out / "scene_matching.png"))
    _remove_stale(out, set(scene_figures))
    figures += scene_figures
    return {"figures": [p.relative_to(out).as_posix() if p.is_relative_to(out) else p.as_posix()
                        for p in figures],
            "pr_series": [p.relative_to(out).as_posix() for p in series],
            "scene_match": match}
