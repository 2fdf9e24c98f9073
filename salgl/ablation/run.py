"""One run of the ablation: prepare and embed a data variant, train and score one cell.

A cell trains on its data's training and validation splits, then scores the test split once,
and writes a metrics JSON (deterministic) and a cost JSON (wall time), kept apart so that
rerunning a cell reproduces its metrics byte for byte.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from salgl.ablation.design import Ablation, Cell
from salgl.atomic import write_json
from salgl.config import TrainConfig
from salgl.errors import SalglError
from salgl.paths import AblationPaths

log = logging.getLogger("salgl")

# What a cell's metrics JSON holds, in this order (test split unless named val_).
CELL_METRICS = ("mAP", "CF1", "OF1", "CF1_calibrated", "OF1_calibrated", "val_mAP",
                "selected_epoch")


def prepare_data(ablation: Ablation, data: str, raw: Path | None = None) -> None:
    from salgl.pipeline import run_prepare

    run_prepare(ablation.dataset_params(data), AblationPaths().prepared(data), raw)


def embed_data(ablation: Ablation, data: str) -> None:
    from salgl.pipeline import run_embed

    paths = AblationPaths()
    run_embed(ablation.dataset_params(data), paths.prepared(data), paths.embeddings(data))


def learned_scene_nmi(paths: list[str], scene_probs, scenes_tsv: Path) -> float:
    """NMI between the learned scene (argmax) and the true scene of each test image."""
    from salgl.data.prepared import display_path
    from salgl.scene_match import scene_matching, true_scenes_for

    true = true_scenes_for([display_path(p) for p in paths], scenes_tsv)
    if not (true >= 0).any():
        raise SalglError(f"{scenes_tsv}: none of the {true.size} test images is listed")
    return scene_matching(scene_probs.argmax(1), true)["nmi"]


def has_learned_scenes(cfg: TrainConfig) -> bool:
    """Whether a variant learns scenes whose agreement with the true ones means something."""
    return cfg.head == "salgl" and cfg.num_scenes > 1


def run_cell(ablation: Ablation, cell: Cell, progress: bool = True) -> dict[str, Any]:
    """Train one cell, score its test split once, write its metrics and its cost."""
    from salgl.data.prepared import load_prepared
    from salgl.evaluate import evaluate_model
    from salgl.train import train

    paths = AblationPaths()
    params = ablation.dataset_params(cell.data, cell.variant, cell.seed, check=True)
    data = load_prepared(paths.prepared(cell.data))
    started = time.perf_counter()
    result = train(cell.name, params.train, data, paths.embeddings(cell.data),
                   paths.model(cell), paths.state(cell), None, progress)
    trained = time.perf_counter() - started
    ev = evaluate_model(paths.model(cell), data, params.evaluate.threshold,
                        params.evaluate.batch_size, params.evaluate.device, progress)
    metrics: dict[str, Any] = {"data": cell.data, "variant": cell.variant, "seed": cell.seed}
    metrics.update({key: ev.metrics.get(key) for key in CELL_METRICS})
    scenes_tsv = paths.prepared(cell.data) / "scenes.tsv"
    metrics["scene_nmi"] = (learned_scene_nmi(ev.paths, ev.scene_probs, scenes_tsv)
                            if has_learned_scenes(params.train) else None)
    write_json(paths.metrics(cell), metrics)
    seconds = result.epoch_seconds
    cost = {"seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
            "epochs": len(seconds), "train_seconds": trained,
            "resumed_from_epoch": result.resumed_from,
            "machine": f"{os.cpu_count()} CPU cores, {params.train.device} device setting"}
    write_json(paths.cost(cell), cost)
    log.info("%s: test mAP %.4f, validation mAP %.4f%s, %.1f s per epoch", cell.name,
             metrics["mAP"], metrics["val_mAP"] or float("nan"),
             "" if metrics["scene_nmi"] is None else f", scene NMI {metrics['scene_nmi']:.3f}",
             cost["seconds_per_epoch"] or float("nan"))
    return metrics
