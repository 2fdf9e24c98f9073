"""The ablation's design: its params file, read and checked, and the cells of its matrix.

`experiments/ablation/params.yaml` names the matrix axes (data, variants, seeds) and what each
data and variant changes; its `prepare`, `embed`, `train` and `evaluate` blocks are the shared
settings, in the schema of params.yaml's `fashion_scenes` blocks. A cell is one
(data, variant, seed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from salgl.paths import ABLATION_PARAMS

AXES = ("data", "variants", "scene_counts", "scene_counts_on", "seeds")


@dataclass(frozen=True)
class Cell:
    data: str
    variant: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.data}-{self.variant}-{self.seed}"


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


def load_ablation(path: str | Path = ABLATION_PARAMS) -> Ablation:
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
