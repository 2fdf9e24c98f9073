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

from salgl.ablation.reading import ReadingRule, reading_rule
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

AXES = ("data", "variants", "seeds")


@dataclass(frozen=True)
class Cell:
    data: str
    variant: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.data}-{self.variant}-{self.seed}"

    @property
    def group(self) -> str:
        """Its seed's files: the DVC stage run@SEED trains every cell of one seed."""
        return f"seed-{self.seed}"


@dataclass(frozen=True)
class Ablation:
    """The parsed params file; every error names its key in that file."""

    source: Path
    raw: Mapping[str, Any]
    data: tuple[str, ...]
    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    rule: ReadingRule
    parallel_runs: int = 1  # cells of one data and seed trained side by side

    def cells(self) -> list[Cell]:
        """Every run of the matrix, in the order the summary lists them."""
        return [Cell(d, v, s) for d in self.data for v in self.variants for s in self.seeds]

    def is_plain(self, variant: str) -> bool:
        """Whether a variant trains the plain backbone (the cheapest cells)."""
        return (self._overrides("variant_settings", variant).get("head")
                or (self.raw.get("train") or {}).get("head")) == "linear"

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
    for key, table in (("data", "data_settings"), ("variants", "variant_settings")):
        for name in axes[key]:
            if not isinstance(name, str) or "-" in name:
                raise SalglError(f"{path}: {key}: {name!r}: expected a name without '-' "
                                 "(cells are named DATA-VARIANT-SEED)")
            if name not in (raw.get(table) or {}):
                raise SalglError(f"{path}: {key}: {name!r} has no entry in {table}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
               for s in axes["seeds"]):
        raise SalglError(f"{path}: seeds: expected whole numbers of at least 0")
    for pair in raw.get("comparisons") or []:
        if (not isinstance(pair, list) or len(pair) != 2
                or any(v not in axes["variants"] for v in pair)):
            raise SalglError(f"{path}: comparisons: {pair!r}: expected [VARIANT, VARIANT] "
                             f"from the variants ({', '.join(axes['variants'])})")
    lanes = raw.get("parallel_runs", 1)
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise SalglError(f"{path}: parallel_runs: expected a whole number of at least 1, got "
                         f"{lanes!r}")
    return Ablation(path, raw, **axes, rule=reading_rule(raw, axes["data"], str(path)),
                    parallel_runs=lanes)
