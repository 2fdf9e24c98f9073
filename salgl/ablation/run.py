"""The ablation's runs: prepare and embed a data variant; train and score the cells of one
data and seed, side by side.

A cell trains on its data's training and validation splits, then scores the test split once,
and writes a metrics JSON (deterministic, with the validation mAP of every epoch for the
convergence check), its per-image test scores (for the paired bootstrap) and a cost JSON
(wall time), kept apart so that rerunning reproduces the first two byte for byte. The
metrics and costs of one data and seed share one file each.
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


def train_and_score(ablation: Ablation, cell: Cell, threads: int | None = None,
                    progress: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train one cell, score its test split once and keep its per-image scores; return its
    metrics and its cost. ``threads``: PyTorch's CPU threads in this process (None: as is)."""
    from salgl.ablation.reading import rise_over_last_two
    from salgl.data.prepared import load_prepared
    from salgl.evaluate import evaluate_model
    from salgl.predictions import Predictions
    from salgl.train import train

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    paths = AblationPaths()
    params = ablation.dataset_params(cell.data, cell.variant, cell.seed, check=True)
    data = load_prepared(paths.prepared(cell.data))
    started = time.perf_counter()
    result = train(cell.name, params.train, data, paths.embeddings(cell.data),
                   paths.model(cell), paths.state(cell), None, progress)
    trained = time.perf_counter() - started
    ev = evaluate_model(paths.model(cell), data, params.evaluate.threshold,
                        params.evaluate.batch_size, params.evaluate.device, progress)
    metrics: dict[str, Any] = {key: ev.metrics.get(key) for key in CELL_METRICS}
    scenes_tsv = paths.prepared(cell.data) / "scenes.tsv"
    metrics["scene_nmi"] = (learned_scene_nmi(ev.paths, ev.scene_probs, scenes_tsv)
                            if has_learned_scenes(params.train) else None)
    metrics["val_mAP_per_epoch"] = list(result.selection_maps)
    metrics["val_rise_last_two"] = rise_over_last_two(result.selection_maps)
    Predictions(ev.scores, ev.targets, ev.scene_probs if metrics["scene_nmi"] is not None
                else None, list(ev.labels), list(ev.paths)).save(paths.scores(cell))
    seconds = result.epoch_seconds
    cost = {"seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
            "epochs": len(seconds), "train_seconds": trained,
            "resumed_from_epoch": result.resumed_from, "threads": threads,
            "machine": f"{os.cpu_count()} CPU cores, {params.train.device} device setting"}
    log.info("%s: test mAP %.4f, validation mAP %.4f%s, %.1f s per epoch", cell.name,
             metrics["mAP"], metrics["val_mAP"] or float("nan"),
             "" if metrics["scene_nmi"] is None else f", scene NMI {metrics['scene_nmi']:.3f}",
             cost["seconds_per_epoch"] or float("nan"))
    return metrics, cost


def _start_lane() -> None:
    """A lane process logs our messages (one line per epoch and per cell, no progress bars)
    and starts its data-loader workers as `salgl train` does on Linux: a spawned process would
    otherwise spawn them too, and a fresh interpreter per loader and epoch cost a quarter of
    the lane's time."""
    import multiprocessing
    import sys

    from salgl.console import configure_logging

    configure_logging(False)
    if sys.platform.startswith("linux"):
        multiprocessing.set_start_method("fork", force=True)


def run_seed(ablation: Ablation, seed: int, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Every cell of one seed (each data, each variant), ``parallel_runs`` at a time, each
    lane a process with an equal share of the cores; then the seed's metrics and cost files.

    Lanes pay on small CPU models: two single-thread processes trained about 1.7 times as
    fast as one process with two threads on the 2-core machine (docs/results.md). A seed's
    cells are one stage so that the lanes stay busy: the plain-backbone cells, the shortest,
    go last. The thread count is part of the arithmetic, so a rerun with the same setting
    on the same machine gives the same bytes.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from salgl.runtime import cpu_cores

    cells = sorted((Cell(d, v, seed) for d in ablation.data for v in ablation.variants),
                   key=lambda c: ablation.is_plain(c.variant))
    for cell in cells:  # every cell's settings, before any cell starts
        ablation.dataset_params(cell.data, cell.variant, cell.seed, check=True)
    lanes = min(ablation.parallel_runs, len(cells))
    if lanes == 1:
        outcomes = [train_and_score(ablation, cell, None, progress) for cell in cells]
    else:
        threads = max(1, cpu_cores() // lanes)
        log.info("seed %d: %d cells, %d side by side with %d thread(s) each", seed,
                 len(cells), lanes, threads)
        with ProcessPoolExecutor(lanes, mp_context=get_context("spawn"),
                                 initializer=_start_lane) as pool:
            futures = [pool.submit(train_and_score, ablation, cell, threads, False)
                       for cell in cells]
            outcomes = [future.result() for future in futures]
    done = dict(zip(cells, outcomes, strict=True))
    order = [Cell(d, v, seed) for d in ablation.data for v in ablation.variants]
    paths = AblationPaths()
    metrics = {f"{c.data}-{c.variant}": done[c][0] for c in order}
    write_json(paths.metrics(seed), metrics)
    write_json(paths.cost(seed), {f"{c.data}-{c.variant}": done[c][1] for c in order})
    return metrics
