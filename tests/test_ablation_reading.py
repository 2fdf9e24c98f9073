"""The second edition's reading rule, convergence check and paired bootstrap, on cases with
known answers (salgl/ablation/reading.py, bootstrap.py, summary.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from salgl.ablation.reading import (
    DOES_NOT_HELP,
    HELPS,
    INCONCLUSIVE,
    ReadingRule,
    is_void,
    rise_over_last_two,
    t_bounds,
    verdict,
)

RULE = ReadingRule(scene_data="positive", control="control")


def test_t_bounds_match_the_textbook_interval() -> None:
    # mean 2, sd 1, n 3: t(0.95, 2) = 2.919986 -> half-width 1.685854
    bounds = t_bounds([1.0, 2.0, 3.0], 0.95)
    assert (bounds.mean, bounds.sd) == pytest.approx((2.0, 1.0))
    assert bounds.lower == pytest.approx(2.0 - 1.685854, abs=1e-6)
    assert bounds.upper == pytest.approx(2.0 + 1.685854, abs=1e-6)
    assert t_bounds([0.3], 0.95).lower is None


@pytest.mark.parametrize(("delta", "did", "expected"), [
    # consistent +0.03 on the scene data, nothing on the control
    ([0.03, 0.028, 0.033, 0.031, 0.029], [0.03, 0.027, 0.034, 0.03, 0.03], HELPS),
    # the same gain, but the control gains as much: scene structure is not why
    ([0.03, 0.028, 0.033, 0.031, 0.029], [0.001, -0.002, 0.002, 0.0, -0.001], INCONCLUSIVE),
    # a large mean carried by three seeds of five
    ([0.08, 0.07, 0.09, -0.001, -0.002], [0.08, 0.07, 0.09, 0.0, 0.0], INCONCLUSIVE),
    # tightly around zero: the upper bound is below 0.01
    ([0.001, -0.002, 0.0, 0.002, -0.001], [0.0, 0.001, -0.001, 0.002, 0.0], DOES_NOT_HELP),
    # SALGL clearly worse: also "does not help"
    ([-0.02, -0.018, -0.022, -0.02, -0.019], [-0.02, -0.02, -0.02, -0.02, -0.02], DOES_NOT_HELP),
    # noisy: neither bound decides
    ([0.04, -0.03, 0.05, -0.02, 0.01], [0.04, -0.03, 0.05, -0.02, 0.01], INCONCLUSIVE),
])
def test_verdict_follows_the_rule(delta, did, expected) -> None:
    assert verdict(delta, did, RULE) == expected


def test_a_run_is_void_until_its_validation_map_stops_rising() -> None:
    assert rise_over_last_two([0.5, 0.6, 0.61]) == pytest.approx(0.11)
    assert is_void([0.5, 0.6, 0.61], RULE)
    assert not is_void([0.3, 0.6, 0.603, 0.604], RULE)
    assert not is_void([0.6, 0.61, 0.59], RULE)  # falling counts as converged
    assert is_void([0.6, 0.6], RULE)  # too short to tell


def _two_variant_ablation(seeds: int, bootstrap_samples: int):
    """A params file in the working folder: variants x and y on the positive control and its
    control, compared x - y; the ablation it describes."""
    import yaml

    from salgl.ablation.design import load_ablation

    params = {"data": ["positive", "control"], "variants": ["x", "y"],
              "seeds": list(range(seeds)), "comparisons": [["x", "y"]],
              "data_settings": {"positive": {}, "control": {}},
              "variant_settings": {"x": {}, "y": {}},
              "reading": {"scene_data": "positive", "control": "control",
                          "bootstrap_samples": bootstrap_samples}}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    return load_ablation("params.yaml")


def _write_cell(cell, scores, targets, history) -> None:
    """One cell's test scores, and its entry in its group's metrics and cost files."""
    import json

    from salgl.atomic import write_json
    from salgl.metrics import average_precision, mean_ap
    from salgl.paths import AblationPaths
    from salgl.predictions import Predictions

    paths = AblationPaths()
    paths_list = [f"test/{i}.png" for i in range(len(scores))]
    Predictions(scores, targets, paths=paths_list).save(paths.scores(cell))
    for path, entry in (
            (paths.metrics(cell.seed),
             {"mAP": mean_ap(average_precision(scores, targets)), "val_mAP": 0.5,
              "val_mAP_per_epoch": history, "val_rise_last_two": rise_over_last_two(history)}),
            (paths.cost(cell.seed), {"seconds_per_epoch": 1.0})):
        kept = json.loads(path.read_text()) if path.is_file() else {}
        write_json(path, {**kept, f"{cell.data}-{cell.variant}": entry})


def test_summary_pairs_seeds_drops_void_runs_and_bootstraps_over_test_images(
        tmp_path: Path, monkeypatch) -> None:
    """Variant x scores better than y on the scene data only; one run of seed 2 is void."""

    from salgl.ablation.design import Cell
    from salgl.ablation.summary import TestScores, difference_rows, read_runs

    monkeypatch.chdir(tmp_path)
    ablation = _two_variant_ablation(seeds=4, bootstrap_samples=300)
    rng = np.random.default_rng(0)
    targets = (rng.random((400, 5)) < 0.3).astype(np.uint8)
    flat = [0.5, 0.6, 0.6, 0.6]
    for seed in range(4):
        noise = rng.normal(size=targets.shape)
        for data in ("positive", "control"):
            better = 1.5 if data == "positive" else 0.0
            _write_cell(Cell(data, "y", seed), noise, targets, flat)
            history = [0.5, 0.55, 0.6] if (seed, data) == (2, "control") else flat
            _write_cell(Cell(data, "x", seed), noise + better * targets, targets, history)
    runs = read_runs(ablation, ablation.rule)
    assert [r["void"] for r in runs].count(True) == 1
    rows, verdicts = difference_rows(ablation, runs, ablation.rule,
                                     TestScores(ablation.rule, ablation.data))
    by = {r["data"]: r for r in rows if r["runs"] == "converged"}
    assert by["positive"]["seeds"] == 3 and "seed_2" not in by["positive"]  # seed 2 dropped
    every = {r["data"]: r for r in rows if r["runs"] != "converged"}  # for the record
    assert every["positive"]["seeds"] == 4 and "seed_2" in every["positive"]
    assert by["control"]["mean"] == pytest.approx(0.0, abs=1e-12)
    # identical scores on the control: every paired resample differs by exactly 0
    assert by["control"]["bootstrap_low"] == by["control"]["bootstrap_high"] == 0.0
    pos = by["positive"]
    assert pos["bootstrap_low"] < pos["mean"] < pos["bootstrap_high"]
    assert pos["mean"] > 0.1 and pos["positive_seeds"] == 3
    assert by["DiD"]["mean"] == pytest.approx(pos["mean"])
    assert verdicts[0]["verdict"] == "inconclusive"  # 3 positive seeds, 4 needed
    assert verdicts[0]["void_seeds"] == 1


def test_a_comparison_without_a_converged_seed_is_unreadable(tmp_path: Path,
                                                             monkeypatch) -> None:
    """Every seed void: the summary says so instead of failing or reading void runs."""

    from salgl.ablation.design import Cell
    from salgl.ablation.summary import UNREADABLE, TestScores, difference_rows, read_runs

    monkeypatch.chdir(tmp_path)
    ablation = _two_variant_ablation(seeds=2, bootstrap_samples=20)
    rng = np.random.default_rng(1)
    targets = (rng.random((50, 3)) < 0.4).astype(np.uint8)
    for seed in range(2):
        for data in ("positive", "control"):
            for variant in ("x", "y"):
                rising = [0.4, 0.5, 0.6] if variant == "x" else [0.5, 0.5, 0.5]
                _write_cell(Cell(data, variant, seed), rng.random(targets.shape), targets,
                            rising)
    runs = read_runs(ablation, ablation.rule)
    rows, verdicts = difference_rows(ablation, runs, ablation.rule,
                                     TestScores(ablation.rule, ablation.data))
    assert verdicts == [{"comparison": "x-y", "seeds": 0, "void_seeds": 2,
                         "verdict": UNREADABLE}]
    assert {r["runs"] for r in rows} == {"all, void included (outside the rule)"}
