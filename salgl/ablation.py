"""The seeded ablation of scene awareness (docs/results.md): settings and one run per cell.

`experiments/ablation/params.yaml` names the matrix axes (data, variants, seeds) and what each
data and variant changes; its `prepare`, `embed`, `train` and `evaluate` blocks are the shared
settings, in the schema of params.yaml's `fashion_scenes` blocks. A cell is one
(data, variant, seed): it trains on the cell's training and validation splits, then scores the
test split once, and writes a metrics JSON (deterministic) and a cost JSON (wall time).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salgl.atomic import write_json
from salgl.config import (
    DatasetParams,
    EmbedConfig,
    EvaluateConfig,
    FashionScenesConfig,
    PlotsConfig,
    TrainConfig,
    load_params,
    parse,
)
from salgl.errors import SalglError

log = logging.getLogger("salgl")

PARAMS = Path("experiments/ablation/params.yaml")
AXES = ("data", "variants", "scene_counts", "scene_counts_on", "seeds")
# What a cell's metrics JSON holds, in this order (test split unless named val_).
CELL_METRICS = ("mAP", "CF1", "OF1", "CF1_calibrated", "OF1_calibrated", "val_mAP",
                "selected_epoch")


@dataclass(frozen=True)
class Cell:
    data: str
    variant: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.data}-{self.variant}-{self.seed}"


@dataclass(frozen=True)
class AblationPaths:
    """Where the ablation reads and writes, relative to the repository root."""

    def prepared(self, data: str) -> Path:
        return Path("data/ablation/prepared") / data

    def embeddings(self, data: str) -> Path:
        return Path("data/ablation/embeddings") / data

    def model(self, cell: Cell) -> Path:
        return Path("models/ablation") / f"{cell.name}.safetensors"

    def state(self, cell: Cell) -> Path:
        return Path("state/ablation") / cell.name

    def metrics(self, cell: Cell) -> Path:
        return Path("metrics/ablation") / f"{cell.name}.json"

    def cost(self, cell: Cell) -> Path:
        return Path("results/ablation/cost") / f"{cell.name}.json"

    table: Path = Path("results/ablation.csv")
    differences: Path = Path("results/ablation_differences.csv")
    figure: Path = Path("results/ablation.png")


@dataclass(frozen=True)
class Ablation:
    """The parsed params file; every error names its key in that file."""

    source: Path
    raw: Mapping[str, Any]
    data: tuple[str, ...]
    variants: tuple[str, ...]
    scene_counts: tuple[str, ...]
    scene_counts_on: tuple[str, ...]
    seeds: tuple[int, ...]

    def cells(self) -> list[Cell]:
        """Every run of the matrix, in the order the summary lists them."""
        grid = [(d, v) for d in self.data for v in self.variants]
        grid += [(d, v) for d in self.scene_counts_on for v in self.scene_counts]
        return [Cell(d, v, s) for d, v in grid for s in self.seeds]

    def _where(self, key: str) -> str:
        return f"{self.source}: {key}"

    def _overrides(self, group: str, name: str) -> Mapping[str, Any]:
        table = self.raw.get(group) or {}
        if name not in table:
            raise SalglError(f"{self._where(group)}: no entry {name!r} (entries: "
                             f"{', '.join(table) or 'none'})")
        value = table[name] or {}
        if not isinstance(value, Mapping):
            raise SalglError(f"{self._where(f'{group}.{name}')}: expected a mapping of settings")
        return value

    def dataset_params(self, data: str, variant: str | None = None, seed: int | None = None,
                       check: bool = False) -> DatasetParams:
        """The fashion_scenes settings of one data (and variant and seed), validated."""
        prepare = {**(self.raw.get("prepare") or {}), **self._overrides("data_settings", data)}
        train = dict(self.raw.get("train") or {})
        if variant is not None:
            train.update(self._overrides("variant_settings", variant))
        if seed is not None:
            train["seed"] = seed
        where = self._where
        train_where = where(f"variant_settings.{variant} over train") if variant else where(
            "train")
        return DatasetParams(
            name="fashion_scenes",
            prepare=parse(FashionScenesConfig, prepare,
                          where(f"data_settings.{data} over prepare")),
            embed=parse(EmbedConfig, self.raw.get("embed"), where("embed")),
            train=parse(TrainConfig, train, train_where, check=check),
            evaluate=parse(EvaluateConfig, self.raw.get("evaluate"), where("evaluate")),
            plots=PlotsConfig(),
        )


def _axis(raw: Mapping, key: str, source: Path) -> tuple:
    value = raw.get(key)
    if not isinstance(value, list) or not value:
        raise SalglError(f"{source}: {key}: expected a non-empty list")
    return tuple(value)


def load_ablation(path: str | Path = PARAMS) -> Ablation:
    path = Path(path)
    raw = load_params(path)
    axes = {key: _axis(raw, key, path) for key in AXES}
    for key in ("data", "scene_counts_on"):
        for name in axes[key]:
            if name not in (raw.get("data_settings") or {}):
                raise SalglError(f"{path}: {key}: {name!r} has no entry in data_settings")
    for key in ("variants", "scene_counts"):
        for name in axes[key]:
            if name not in (raw.get("variant_settings") or {}):
                raise SalglError(f"{path}: {key}: {name!r} has no entry in variant_settings")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
               for s in axes["seeds"]):
        raise SalglError(f"{path}: seeds: expected whole numbers of at least 0")
    return Ablation(path, raw, **axes)


# ----------------------------------------------------------------------------- the stages


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
    from salgl.figures.scenes import scene_matching, true_scenes_for

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
                        params.evaluate.batch_size, params.train.device, progress)
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
