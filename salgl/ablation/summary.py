"""The ablation's summary: every run's convergence check, the table over seeds, the paired
differences with their t bounds and bootstrap intervals, the verdict of the reading rule
(reading.py), and the figures (figure.py)."""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salgl.ablation.design import Ablation, Cell
from salgl.ablation.reading import ReadingRule, is_void, t_bounds, verdict
from salgl.atomic import write_text
from salgl.errors import SalglError
from salgl.paths import AblationPaths

log = logging.getLogger("salgl")

SUMMARISED = ("mAP", "CF1", "OF1", "CF1_calibrated", "OF1_calibrated", "val_mAP", "scene_nmi")


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SalglError(f"{path}: missing ({what}; run the cell's stage first)") from None
    except json.JSONDecodeError as exc:
        raise SalglError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def read_runs(ablation: Ablation, rule: ReadingRule) -> list[dict[str, Any]]:
    """Each cell's metrics with its seconds per epoch and its convergence, in matrix order."""
    paths, runs = AblationPaths(), []
    files: dict[int, tuple[dict, dict]] = {}
    for cell in ablation.cells():
        if cell.seed not in files:
            files[cell.seed] = (_read(paths.metrics(cell.seed), "metrics"),
                                _read(paths.cost(cell.seed), "cost"))
        metrics, cost = files[cell.seed]
        key = f"{cell.data}-{cell.variant}"
        where = f"{paths.metrics(cell.seed)}: {key}"
        if not isinstance(metrics.get(key), dict):
            raise SalglError(f"{where}: missing (run the stage run@{cell.seed} again)")
        run = {"data": cell.data, "variant": cell.variant, "seed": cell.seed, **metrics[key]}
        history = run.get("val_mAP_per_epoch")
        if not isinstance(history, list):
            raise SalglError(f"{where}: no val_mAP_per_epoch (written by an older salgl; run "
                             f"the stage run@{cell.seed} again)")
        run["void"] = is_void(history, rule)
        run["seconds_per_epoch"] = (cost.get(key) or {}).get("seconds_per_epoch")
        runs.append(run)
    return runs


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); None where values are missing."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None, None
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else None


def _group(runs: list[dict], data: str, variant: str) -> dict[int, dict]:
    return {r["seed"]: r for r in runs if r["data"] == data and r["variant"] == variant}


def describe(ablation: Ablation, variant: str) -> str:
    changes = (ablation.raw.get("variant_settings") or {}).get(variant) or {}
    return " ".join(f"{k}={v}" for k, v in changes.items()) or "as configured"


def convergence_rows(runs: list[dict], rule: ReadingRule) -> list[dict[str, Any]]:
    """One row per run: its last three validation mAPs, the rise over the last two epochs."""
    rows = []
    for r in runs:
        history = r["val_mAP_per_epoch"]
        last = (history[-3:] if len(history) >= 3 else [None] * (3 - len(history)) + history)
        rows.append({"cell": f"{r['data']}-{r['variant']}-{r['seed']}", "epochs": len(history),
                     "val_mAP_third_last": last[0], "val_mAP_second_last": last[1],
                     "val_mAP_last": last[2], "rise_last_two": r.get("val_rise_last_two"),
                     "max_rise": rule.max_rise, "selected_epoch": r.get("selected_epoch"),
                     "status": "void" if r["void"] else "converged"})
    return rows


def summary_rows(ablation: Ablation, runs: list[dict]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation over the converged runs of each data and variant."""
    rows = []
    for data in ablation.data:
        for variant in ablation.variants:
            everything = _group(runs, data, variant)
            group = [r for r in everything.values() if not r["void"]]
            row: dict[str, Any] = {"data": data, "variant": variant,
                                   "settings": describe(ablation, variant),
                                   "runs": len(group), "void_runs": len(everything) - len(group)}
            for key in SUMMARISED:
                mean, std = mean_std([r.get(key) for r in group])
                row[f"{key}_mean"], row[f"{key}_std"] = mean, std
            row["seconds_per_epoch"], _ = mean_std(
                [r["seconds_per_epoch"] for r in everything.values()])
            rows.append(row)
    return rows


def paired_seeds(runs: list[dict], first: str, second: str, rule: ReadingRule,
                 with_void: bool = False) -> list[int]:
    """Seeds whose four runs of this comparison (both variants, both data) all converged
    (all of them, void or not, with ``with_void``)."""
    groups = [_group(runs, d, v) for d in (rule.scene_data, rule.control)
              for v in (first, second)]
    seeds = set.intersection(*(set(g) for g in groups))
    return sorted(s for s in seeds if with_void or not any(g[s]["void"] for g in groups))


UNREADABLE = "unreadable: every seed has a void run"
CONVERGED, ALL_RUNS = "converged", "all, void included (outside the rule)"


class TestScores:
    """Per-image test scores of each cell, and the bootstrap's resampled mAP, each read once."""

    def __init__(self, rule: ReadingRule, data: Sequence[str]):
        self.rule, self.paths = rule, AblationPaths()
        self._counts: dict[str, np.ndarray] = {}
        self._maps: dict[Cell, np.ndarray] = {}
        self._rngs = {name: np.random.default_rng([rule.bootstrap_seed, k])
                      for k, name in enumerate(data)}
        self._order: dict[str, list[str]] = {}

    def resampled_map(self, cell: Cell) -> np.ndarray:
        from salgl.ablation.bootstrap import resample_counts, resampled_map
        from salgl.predictions import Predictions

        if cell not in self._maps:
            pred = Predictions.load(self.paths.scores(cell))
            images = pred.paths or []
            if images != self._order.setdefault(cell.data, images):
                raise SalglError(f"{self.paths.scores(cell)}: test images differ from the "
                                 f"other runs on {cell.data}; run the cell again")
            if cell.data not in self._counts:
                self._counts[cell.data] = resample_counts(
                    len(pred.scores), self.rule.bootstrap_samples, self._rngs[cell.data])
            self._maps[cell] = resampled_map(pred.scores, pred.targets, self._counts[cell.data])
        return self._maps[cell]

    def mean_difference(self, data: str, first: str, second: str,
                        seeds: Sequence[int]) -> np.ndarray:
        """Per resample, the mean over seeds of mAP(first) - mAP(second) on ``data``."""
        return np.mean([self.resampled_map(Cell(data, first, s))
                        - self.resampled_map(Cell(data, second, s)) for s in seeds], axis=0)


def _comparison_rows(runs: list[dict], first: str, second: str, seeds: list[int],
                     rule: ReadingRule, scores: TestScores, kind: str
                     ) -> tuple[list[dict], dict[str, list[float]]]:
    """Δ per seed on each data and DiD, with t bounds and the bootstrap interval."""
    from salgl.ablation.bootstrap import interval

    per_data, samples = {}, {}
    for data in (rule.scene_data, rule.control):
        x, y = _group(runs, data, first), _group(runs, data, second)
        per_data[data] = [x[s]["mAP"] - y[s]["mAP"] for s in seeds]
        samples[data] = scores.mean_difference(data, first, second, seeds)
    did = [a - b for a, b in zip(per_data[rule.scene_data], per_data[rule.control],
                                 strict=True)]
    series = {**per_data, "DiD": did}
    samples["DiD"] = samples[rule.scene_data] - samples[rule.control]
    rows = []
    for name, values in series.items():
        bounds = t_bounds(values, rule.confidence)
        low, high = interval(samples[name], rule.confidence)
        row: dict[str, Any] = {"comparison": f"{first}-{second}", "data": name, "runs": kind}
        row.update({f"seed_{s}": v for s, v in zip(seeds, values, strict=True)})
        row.update({"seeds": len(values), "mean": bounds.mean, "sd": bounds.sd,
                    "t_lower": bounds.lower, "t_upper": bounds.upper,
                    "positive_seeds": sum(v > 0 for v in values),
                    "bootstrap_low": low, "bootstrap_high": high})
        rows.append(row)
    return rows, series


def difference_rows(ablation: Ablation, runs: list[dict], rule: ReadingRule,
                    scores: TestScores) -> tuple[list[dict], list[dict]]:
    """Per comparison: the rows over converged seeds (the rule's) and over every seed (void
    runs included, outside the rule, for the record); and one verdict row per comparison,
    from the converged seeds alone."""
    rows, verdicts = [], []
    for first, second in ablation.raw.get("comparisons") or []:
        seeds = paired_seeds(runs, first, second, rule)
        every = paired_seeds(runs, first, second, rule, with_void=True)
        series: dict[str, list[float]] = {}
        if seeds:
            kept, series = _comparison_rows(runs, first, second, seeds, rule, scores, CONVERGED)
            rows += kept
        if every and every != seeds:
            rows += _comparison_rows(runs, first, second, every, rule, scores, ALL_RUNS)[0]
        verdict_row: dict[str, Any] = {"comparison": f"{first}-{second}", "seeds": len(seeds),
                                       "void_seeds": len(every) - len(seeds)}
        if not seeds:
            verdicts.append({**verdict_row, "verdict": UNREADABLE})
            continue
        delta = t_bounds(series[rule.scene_data], rule.confidence)
        gap = t_bounds(series["DiD"], rule.confidence)
        verdicts.append({
            **verdict_row, "delta_mean": delta.mean, "delta_t_upper": delta.upper,
            "positive_seeds": sum(v > 0 for v in series[rule.scene_data]),
            "did_mean": gap.mean, "did_t_lower": gap.lower,
            "verdict": verdict(series[rule.scene_data], series["DiD"], rule)})
    return rows, verdicts


def to_csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else value


def summarise(ablation: Ablation) -> dict[str, list[dict[str, Any]]]:
    """Write the tables and the figures; return the rows."""
    from salgl.ablation.figure import ablation_figure, convergence_figure

    paths, rule = AblationPaths(), ablation.rule
    runs = read_runs(ablation, rule)
    converge = convergence_rows(runs, rule)
    rows = summary_rows(ablation, runs)
    diffs, verdicts = difference_rows(ablation, runs, rule, TestScores(rule, ablation.data))
    write_text(paths.convergence, to_csv(converge))
    write_text(paths.table, to_csv(rows))
    write_text(paths.differences, to_csv(diffs))
    write_text(paths.verdicts, to_csv(verdicts))
    titles = ablation.raw.get("variant_titles")
    ablation_figure(runs, diffs, ablation.data, paths.figure, titles, verdicts, rule)
    convergence_figure(runs, ablation.data, ablation.variants, paths.convergence_figure,
                       rule.max_rise, titles)
    for row in converge:
        if row["status"] == "void":
            log.warning("%s: void (validation mAP rose %s over its last two epochs)",
                        row["cell"], _cell(row["rise_last_two"]))
    for row in verdicts:
        if row["seeds"]:
            log.info("%s: mean Δ %+.4f on %s, DiD %+.4f over %d converged seeds: %s",
                     row["comparison"], row["delta_mean"], rule.scene_data, row["did_mean"],
                     row["seeds"], row["verdict"])
        else:
            log.info("%s: %s", row["comparison"], row["verdict"])
    log.info("ablation summary: %s, %s, %s, %s, %s", paths.table, paths.differences,
             paths.verdicts, paths.convergence, paths.figure)
    return {"rows": rows, "differences": diffs, "verdicts": verdicts, "convergence": converge}
