"""Evaluate a model file on a prepared test split: metrics JSON, per-label AP, predictions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from salgl.atomic import write_json, write_text
from salgl.calibration import check_thresholds, thresholded_metrics
from salgl.checkpoint import ModelInfo, load_model
from salgl.data.dataset import MultiLabelImages, check_images_exist
from salgl.data.prepared import PreparedDataset, display_path
from salgl.errors import SalglError
from salgl.inference import predict_scores, transform_for
from salgl.metrics import (
    average_precision,
    average_precisions,
    compute_metrics,
    mean_ap,
    scene_usage,
)
from salgl.output_rules import check_dir_output
from salgl.predictions import Predictions
from salgl.runtime import autocast_dtype, loader_workers, select_device


@dataclass
class Evaluation:
    labels: list[str]
    paths: list[str]
    scores: np.ndarray
    targets: np.ndarray
    ignore: np.ndarray | None
    scene_probs: np.ndarray
    metrics: dict
    cooccurrence: np.ndarray  # the model's scene memory, for figures without reloading it


def label_prior_map(targets: np.ndarray, ignore: np.ndarray | None) -> float:
    """mAP of constant scores: each label's AP is then its prevalence."""
    return mean_ap(average_precision(np.zeros(targets.shape), targets, ignore))


def evaluate_model(model_path: str | Path, data: PreparedDataset, threshold: float = 0.5,
                   batch_size: int = 256, device: str = "auto", progress: bool = True
                   ) -> Evaluation:
    dev = select_device(device, "evaluate.<dataset>.device")
    model, info = load_model(model_path, dev)
    model.set_channels_last()
    if info.labels != data.labels:
        raise SalglError(f"{model_path}: model labels differ from {data.root / 'labels.txt'} "
                         f"({len(info.labels)} vs {len(data.labels)} labels)")
    check_images_exist(data.test.paths, data.root / "test.tsv")
    loader = DataLoader(MultiLabelImages(data.test.paths, data.test.targets, transform_for(info)),
                        batch_size=batch_size, num_workers=loader_workers(dev))
    # The training precision (fp32 on the CPU); imported checkpoints are scored in fp32.
    dtype = autocast_dtype(bool(info.extra.get("train", {}).get("amp", False)), dev)
    scores, scene_probs, _ = predict_scores(model, loader, dev, dtype, progress, "evaluate")
    scores, scene_probs = scores.numpy(), scene_probs.numpy()
    metrics = compute_metrics(scores, data.test.targets, data.ignore, threshold, scene_probs)
    metrics["baseline_label_prior_mAP"] = label_prior_map(data.test.targets, data.ignore)
    metrics.update(selection_summary(info))
    thresholds = info.extra.get("thresholds")
    if thresholds is not None:
        cuts = check_thresholds(thresholds, len(info.labels), f"{model_path}: thresholds")
        calibrated = thresholded_metrics(scores, data.test.targets, cuts, data.ignore)
        metrics.update({f"{key}_calibrated": value for key, value in calibrated.items()})
    return Evaluation(data.labels, data.test.paths, scores, data.test.targets, data.ignore,
                      scene_probs, headline_first(metrics), model.cooccurrence.cpu().numpy())


# Test mAP, F1 per class and overall at 0.5, and the validation mAP the weights were chosen
# on: the four numbers a comparison of runs starts from (calibrated F1 and the rest are in
# the full record).
HEADLINE = ("mAP", "CF1", "OF1", "val_mAP")


def headline_first(metrics: dict) -> dict:
    """The numbers people compare first, then the rest, in the full record."""
    return {**headline(metrics), **{k: v for k, v in metrics.items() if k not in HEADLINE}}


def headline(metrics: dict) -> dict:
    """The file DVC compares (`dvc metrics show`, `dvc exp show`): a few columns that fit a
    terminal; every other number goes to the full record beside it."""
    return {k: metrics[k] for k in HEADLINE if k in metrics}


def selection_summary(info: ModelInfo) -> dict:
    """How the model's weights were chosen, from its file: split, epoch, validation mAP."""
    extra = info.extra
    if "selected_on" not in extra:  # imported checkpoints, files of older salgl versions
        return {"selected_on": None, "selected_epoch": extra.get("best_epoch"),
                "val_mAP": None}
    return {"selected_on": extra["selected_on"], "selected_epoch": extra["selected_epoch"],
            "val_mAP": extra.get("val_mAP")}


def _num(x: float) -> str:
    return "" if np.isnan(x) else f"{x:.6f}"


def per_label_table(ev: Evaluation) -> str:
    """CSV: label, AP (interpolated and not), positives, prevalence."""
    ap, ap_raw = average_precisions(ev.scores, ev.targets, ev.ignore)
    valid = 1 - ev.ignore if ev.ignore is not None else np.ones_like(ev.targets)
    positives = (ev.targets * valid).sum(0)
    lines = ["label,ap,ap_noninterp,positives,prevalence"]
    for i, name in enumerate(ev.labels):
        prevalence = positives[i] / max(valid[:, i].sum(), 1)
        lines.append(f"{name},{_num(ap[i])},{_num(ap_raw[i])},{int(positives[i])},"
                     f"{prevalence:.6f}")
    return "\n".join(lines) + "\n"


def scene_usage_table(ev: Evaluation) -> str:
    counts, _ = scene_usage(ev.scene_probs)
    return "scene,images\n" + "".join(f"{k},{int(n)}\n" for k, n in enumerate(counts))


def write_evaluation(ev: Evaluation, metrics_path: Path, table_dir: Path,
                     predictions_path: Path, headline_path: Path | None = None) -> None:
    """All evaluate-stage outputs; each file appears whole or not at all. `metrics_path`
    gets every number, `headline_path` (when given) the few DVC compares. The tables folder
    holds nothing but salgl's tables (no link is written through): the command line checks
    every output before any work, and this checks the folder again for direct callers."""
    check_dir_output(table_dir, "eval")
    table_dir.mkdir(parents=True, exist_ok=True)
    write_text(table_dir / "per_label_ap.csv", per_label_table(ev))
    write_text(table_dir / "scene_usage.csv", scene_usage_table(ev))
    Predictions(ev.scores, ev.targets, ev.scene_probs, ev.labels,
                [display_path(p) for p in ev.paths],  # the same bytes in any clone
                ev.ignore).save(predictions_path)
    write_json(metrics_path, ev.metrics)
    if headline_path is not None:
        write_json(headline_path, headline(ev.metrics))

