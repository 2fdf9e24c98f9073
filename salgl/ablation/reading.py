"""The second edition's reading rule (docs/results.md), fixed before any of its runs.

Per comparison (x, y): Δ is x's test mAP minus y's, per seed (the same seed gives both the
same initialisation and batch order); DiD is Δ on the scene data minus Δ on the control, per
seed. The verdict:

- **helps** when the one-sided lower confidence bound of the mean DiD is above 0, the mean Δ
  on the scene data is at least ``min_difference``, and Δ there is positive in at least
  ``min_positive_seeds`` seeds;
- **does not help** when the one-sided upper bound of the mean Δ on the scene data is below
  ``min_difference``;
- **inconclusive** otherwise.

Bounds are Student t over the seeds. A run is void when its validation mAP still rose by
``max_rise`` or more over its last two epochs; a seed with a void run in a comparison drops
out of that comparison (so the positive-seed count gets stricter, never looser).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from salgl.errors import SalglError

HELPS, DOES_NOT_HELP, INCONCLUSIVE = "helps", "does not help", "inconclusive"


@dataclass(frozen=True)
class ReadingRule:
    scene_data: str  # the data where scenes change which labels go together
    control: str  # the same generator without scene structure (scene_purity 0)
    min_difference: float = 0.01
    min_positive_seeds: int = 4
    confidence: float = 0.95  # one-sided, for the t bounds; two-sided for the bootstrap
    max_rise: float = 0.005  # convergence: validation mAP rise over the last two epochs
    bootstrap_samples: int = 2000
    bootstrap_seed: int = 0


def reading_rule(raw: Mapping[str, Any], data: Sequence[str], where: str) -> ReadingRule:
    """The ``reading`` block of the params file, checked; errors name its keys."""
    block = raw.get("reading")
    if not isinstance(block, Mapping):
        raise SalglError(f"{where}: reading: expected a mapping with scene_data and control")
    known = {f.name: f for f in fields(ReadingRule)}
    for key in block:
        if key not in known:
            raise SalglError(f"{where}: reading.{key}: unknown key (known: {', '.join(known)})")
    for key in ("scene_data", "control"):
        if block.get(key) not in data:
            raise SalglError(f"{where}: reading.{key}: {block.get(key)!r} is not one of the "
                             f"data ({', '.join(data)})")
    values: dict[str, Any] = {}
    for key, value in block.items():
        if key in ("scene_data", "control"):
            values[key] = value
            continue
        kind = int if known[key].type in (int, "int") else float
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                kind is int and not isinstance(value, int)):
            what = "a whole number" if kind is int else "a number"
            raise SalglError(f"{where}: reading.{key}: expected {what}, got {value!r}")
        values[key] = kind(value)
    rule = ReadingRule(**values)
    if not 0.5 < rule.confidence < 1:
        raise SalglError(f"{where}: reading.confidence: expected a number between 0.5 and 1")
    if rule.bootstrap_samples < 1 or rule.min_positive_seeds < 0:
        raise SalglError(f"{where}: reading: bootstrap_samples must be at least 1 and "
                         "min_positive_seeds at least 0")
    return rule


def rise_over_last_two(history: Sequence[float]) -> float | None:
    """Validation mAP after the last epoch minus two epochs before; None with fewer than 3."""
    return float(history[-1] - history[-3]) if len(history) >= 3 else None


def is_void(history: Sequence[float], rule: ReadingRule) -> bool:
    """A run is void when it had not converged: its rise is unknown or at least max_rise."""
    rise = rise_over_last_two(history)
    return rise is None or rise >= rule.max_rise


@dataclass(frozen=True)
class Bounds:
    mean: float
    lower: float | None  # one-sided lower confidence bound of the mean
    upper: float | None  # one-sided upper confidence bound of the mean
    sd: float | None


def t_bounds(values: Sequence[float], confidence: float) -> Bounds:
    """Mean and one-sided Student t bounds over the seeds (none with fewer than two)."""
    from scipy.stats import t

    xs = [float(v) for v in values]
    if not xs:
        raise SalglError("no paired seeds left to read (every seed has a void run)")
    mean = statistics.mean(xs)
    if len(xs) < 2:
        return Bounds(mean, None, None, None)
    sd = statistics.stdev(xs)
    half = float(t.ppf(confidence, len(xs) - 1)) * sd / math.sqrt(len(xs))
    return Bounds(mean, mean - half, mean + half, sd)


def verdict(delta_scene: Sequence[float], did: Sequence[float], rule: ReadingRule) -> str:
    """The rule above, on the per-seed Δ (scene data) and DiD of one comparison."""
    delta, gap = t_bounds(delta_scene, rule.confidence), t_bounds(did, rule.confidence)
    positives = sum(d > 0 for d in delta_scene)
    if (gap.lower is not None and gap.lower > 0 and delta.mean >= rule.min_difference
            and positives >= rule.min_positive_seeds):
        return HELPS
    if delta.upper is not None and delta.upper < rule.min_difference:
        return DOES_NOT_HELP
    return INCONCLUSIVE
