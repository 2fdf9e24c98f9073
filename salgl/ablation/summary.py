"""The ablation's summary: per (data, variant) mean and spread over seeds, the paired
differences with the reading rule fixed in docs/results.md, and the figure (figure.py)."""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from salgl.ablation.design import Ablation
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


def read_runs(ablation: Ablation) -> list[dict[str, Any]]:
    """Each cell's metrics with its seconds per epoch, in matrix order."""
    paths, runs = AblationPaths(), []
    for cell in ablation.cells():
        run = _read(paths.metrics(cell), "metrics")
        run["seconds_per_epoch"] = _read(paths.cost(cell), "cost")["seconds_per_epoch"]
        runs.append(run)
    return runs


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); None where values are missing."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None, None
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else None


def spread(values: Sequence[float]) -> float:
    """Largest minus smallest over the seeds."""
    return max(values) - min(values)


def _group(runs: list[dict], data: str, variant: str) -> list[dict]:
    return sorted((r for r in runs if r["data"] == data and r["variant"] == variant),
                  key=lambda r: r["seed"])


def summary_rows(ablation: Ablation, runs: list[dict]) -> list[dict[str, Any]]:
    rows = []
    groups = [(d, v) for d in ablation.data for v in ablation.variants]
    groups += [(d, v) for d in ablation.scene_counts_on for v in ablation.scene_counts]
    for data, variant in groups:
        group = _group(runs, data, variant)
        row: dict[str, Any] = {"data": data, "variant": variant,
                               "settings": describe(ablation, variant), "seeds": len(group)}
        for key in SUMMARISED:
            mean, std = mean_std([r.get(key) for r in group])
            row[f"{key}_mean"], row[f"{key}_std"] = mean, std
        row["mAP_spread"] = spread([r["mAP"] for r in group])
        row["seconds_per_epoch"] = statistics.mean(r["seconds_per_epoch"] for r in group)
        rows.append(row)
    return rows


def describe(ablation: Ablation, variant: str) -> str:
    changes = (ablation.raw.get("variant_settings") or {}).get(variant) or {}
    return " ".join(f"{k}={v}" for k, v in changes.items()) or "as configured"


def difference_rows(ablation: Ablation, runs: list[dict]) -> list[dict[str, Any]]:
    """Paired test-mAP differences per seed, and the reading rule: a difference counts only
    if its mean exceeds the larger of the two variants' spreads over seeds."""
    rows = []
    for data in ablation.data:
        for first, second in ablation.raw.get("comparisons") or []:
            a, b = _group(runs, data, first), _group(runs, data, second)
            if not a or not b:
                continue
            by_seed = {r["seed"]: r["mAP"] for r in b}
            diffs = [(r["seed"], r["mAP"] - by_seed[r["seed"]]) for r in a if r["seed"] in by_seed]
            values = [d for _, d in diffs]
            mean = statistics.mean(values)
            bar = max(spread([r["mAP"] for r in a]), spread([r["mAP"] for r in b]))
            row: dict[str, Any] = {"data": data, "comparison": f"{first}-{second}"}
            row.update({f"seed_{seed}": d for seed, d in diffs})
            row.update({"mean": mean, "spread": spread(values), "largest_variant_spread": bar,
                        "reading": (f"{first} better" if mean > bar else
                                    f"{second} better" if -mean > bar else
                                    "no measurable difference")})
            rows.append(row)
    return rows


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
    """Write the table, the differences and the figure; return the rows."""
    from salgl.ablation.figure import ablation_figure

    paths = AblationPaths()
    runs = read_runs(ablation)
    rows, diffs = summary_rows(ablation, runs), difference_rows(ablation, runs)
    write_text(paths.table, to_csv(rows))
    write_text(paths.differences, to_csv(diffs))
    ablation_figure(runs, ablation.data + tuple(d for d in ablation.scene_counts_on
                                               if d not in ablation.data), paths.figure,
                    ablation.raw.get("variant_titles"))
    for row in diffs:
        log.info("%s, %s: mean test mAP difference %+.4f (seed spread %.4f): %s", row["data"],
                 row["comparison"], row["mean"], row["largest_variant_spread"], row["reading"])
    log.info("ablation summary: %s, %s, %s", paths.table, paths.differences, paths.figure)
    return {"rows": rows, "differences": diffs}

