"""Where the stages read and write, relative to the repository root: each default location is
defined once here, and the pipeline, the ablation and the command line's help text all read it
from here (docs/contract/architecture.md). Standard library only, so ``salgl --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Cell(Protocol):
    """An ablation run (salgl.ablation.design.Cell): its files are named after it."""

    name: str


PARAMS = Path("params.yaml")
ABLATION_PARAMS = Path("experiments/ablation/params.yaml")


@dataclass(frozen=True)
class DatasetPaths:
    """Where each stage of one dataset reads and writes."""

    name: str

    @property
    def raw(self) -> Path:
        """A real benchmark's own files, unless prepare.<name>.raw or --raw names another."""
        return Path("data/raw") / self.name

    @property
    def prepared(self) -> Path:
        return Path("data/prepared") / self.name

    @property
    def embeddings(self) -> Path:
        return Path("data/embeddings") / self.name

    @property
    def model(self) -> Path:
        return Path("models") / self.name / "model.safetensors"

    @property
    def state(self) -> Path:
        return Path("state") / self.name

    @property
    def live(self) -> Path:
        return Path("dvclive") / self.name

    @property
    def metrics(self) -> Path:
        return Path("metrics") / f"{self.name}.json"

    @property
    def all_metrics(self) -> Path:
        """Every number of the evaluation; `metrics` holds the few that DVC compares."""
        return Path("metrics") / f"{self.name}_all.json"

    @property
    def eval_dir(self) -> Path:
        return Path("plots") / self.name / "eval"

    @property
    def predictions(self) -> Path:
        return Path("data/predictions") / f"{self.name}.npz"

    @property
    def figures(self) -> Path:
        return Path("plots") / self.name / "figures"

    @property
    def training_curves(self) -> Path:
        return Path("plots") / self.name / "training_curves.png"

    @property
    def scene_match(self) -> Path:
        return Path("metrics") / f"{self.name}_scenes.json"


@dataclass(frozen=True)
class OfficialPaths:
    """Where `salgl evaluate-official NAME` writes: one released experiment, official.NAME."""

    name: str

    @property
    def model(self) -> Path:
        return Path("models/official") / f"{self.name}.safetensors"

    @property
    def predictions(self) -> Path:
        return Path("data/predictions/official") / f"{self.name}.npz"

    @property
    def plots(self) -> Path:
        return Path("plots/official") / self.name

    @property
    def eval_dir(self) -> Path:
        return self.plots / "eval"

    @property
    def figures(self) -> Path:
        return self.plots / "figures"

    @property
    def metrics(self) -> Path:
        return Path("metrics/official") / f"{self.name}.json"


@dataclass(frozen=True)
class AblationPaths:
    """Where the scene-awareness ablation (salgl.ablation) reads and writes."""

    def prepared(self, data: str) -> Path:
        return Path("data/ablation/prepared") / data

    def embeddings(self, data: str) -> Path:
        return Path("data/ablation/embeddings") / data

    def model(self, cell: Cell) -> Path:
        return Path("models/ablation") / cell.group / f"{cell.data}-{cell.variant}.safetensors"

    def state(self, cell: Cell) -> Path:
        return Path("state/ablation") / cell.name

    def metrics(self, seed: int) -> Path:
        """Every cell's metrics for one seed: {DATA-VARIANT: {metric: value}}."""
        return Path("metrics/ablation") / f"seed-{seed}.json"

    def cost(self, seed: int) -> Path:
        return Path("results/ablation/cost") / f"seed-{seed}.json"

    def scores(self, cell: Cell) -> Path:
        """Per-image test scores (salgl.predictions format), for the paired bootstrap."""
        return Path("results/ablation/scores") / cell.group / f"{cell.data}-{cell.variant}.npz"

    table: Path = Path("results/ablation.csv")
    differences: Path = Path("results/ablation_differences.csv")
    verdicts: Path = Path("results/ablation_verdicts.csv")
    convergence: Path = Path("results/ablation_convergence.csv")
    figure: Path = Path("results/ablation.png")
    convergence_figure: Path = Path("results/ablation_convergence.png")
