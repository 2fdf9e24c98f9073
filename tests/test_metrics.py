"""Hand-computed checks of the evaluation contract in salgl.metrics (plus a sklearn cross-check)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from salgl.errors import SalglError
from salgl.metrics import (
    EPS,
    average_precision,
    check_inputs,
    compute_metrics,
    scene_usage,
)
from salgl.predictions import Predictions, metrics_from_file

EXPECTED_KEYS = [
    "mAP", "mAP_noninterp",
    "CP", "CR", "CF1", "OP", "OR", "OF1",
    "CP_top3", "CR_top3", "CF1_top3", "OP_top3", "OR_top3", "OF1_top3",
]
COUNT_KEYS = ["num_images", "num_labels", "labels_without_positives",
              "labels_without_predictions"]


def _col(*values: float) -> np.ndarray:
    """A single-label (N, 1) array."""
    return np.asarray(values, dtype=np.float64)[:, None]


def _random_case(seed: int, n: int = 300, c: int = 12, decimals: int | None = None):
    """Seeded scores/targets with every label having at least one positive."""
    rng = np.random.default_rng(seed)
    scores = rng.random((n, c))
    if decimals is not None:
        scores = np.round(scores, decimals)
    targets = (rng.random((n, c)) < 0.2).astype(np.int64)
    targets[0] = 1
    return scores, targets


# ------------------------------------------------------------------------- average precision


def test_simple_ranking_by_hand() -> None:
    scores = np.array([[0.9, 0.9], [0.8, 0.8], [0.7, 0.7], [0.6, 0.6]])
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    # label 0, targets 1,0,1,0: (P,R) per rank = (1,.5) (.5,.5) (2/3,1) (.5,1)
    #   non-interp = .5*1 + .5*2/3 = 5/6; interp: max precision to the right is the same -> 5/6
    # label 1, targets 0,1,1,0: (P,R) = (0,0) (.5,.5) (2/3,1) (.5,1)
    #   non-interp = .5*.5 + .5*2/3 = 7/12; interp lifts rank 2 to 2/3: .5*2/3 + .5*2/3 = 2/3
    np.testing.assert_allclose(average_precision(scores, targets), [5 / 6, 2 / 3], atol=1e-12)
    np.testing.assert_allclose(average_precision(scores, targets, interpolated=False),
                               [5 / 6, 7 / 12], atol=1e-12)


def test_ties_by_hand_and_order_independent() -> None:
    scores = _col(0.9, 0.5, 0.5, 0.1)
    targets = _col(1, 1, 0, 0)
    # groups {0.9}: tp=1 cnt=1 -> P=1, R=.5 ; {0.5, 0.5}: tp=2 cnt=3 -> P=2/3, R=1
    # AP = .5*1 + .5*2/3 = 5/6 (breaking the tie positive-first would give 1.0)
    swapped = [0, 2, 1, 3]  # the tied negative now sorts before the tied positive
    for interp in (True, False):
        ap = average_precision(scores, targets, interpolated=interp)
        ap_swapped = average_precision(scores[swapped], targets[swapped], interpolated=interp)
        assert ap[0] == pytest.approx(5 / 6, abs=1e-12)
        assert ap_swapped[0] == pytest.approx(ap[0], abs=1e-12)


def test_three_way_tie_differs_from_every_ordering() -> None:
    # one group of 3 with 2 positives: P=2/3 at R=1 -> AP = 2/3 (non-interp); the orderings
    # [0,1,1] [1,0,1] [1,1,0] would give 7/12, 5/6 and 1 instead
    ap = average_precision(_col(0.5, 0.5, 0.5), _col(1, 0, 1), interpolated=False)
    assert ap[0] == pytest.approx(2 / 3, abs=1e-12)


def test_constant_scores_give_prevalence() -> None:
    targets = np.zeros((10, 2))
    targets[:3, 0] = 1  # prevalence .3
    targets[:7, 1] = 1  # prevalence .7
    # a single tied group: P = prevalence at R = 1 -> AP = prevalence
    np.testing.assert_allclose(average_precision(np.full((10, 2), 0.4), targets), [0.3, 0.7],
                               atol=1e-12)


def test_label_without_positives() -> None:
    scores = np.array([[0.9, 0.8], [0.2, 0.7], [0.4, 0.1]])
    targets = np.array([[1, 0], [0, 0], [1, 0]])
    ap = average_precision(scores, targets)
    assert ap[0] == pytest.approx(1.0) and np.isnan(ap[1])
    out = compute_metrics(scores, targets)
    assert out["mAP"] == pytest.approx(1.0)  # the NaN label is excluded, not counted as 0
    assert out["labels_without_positives"] == 1
    # label 0 ranks pos(.9), pos(.4), neg(.2) -> AP 1; at .5 it predicts only image 0:
    # TP=1, G=2 -> recall .5. label 1 predicts 2 (TP=0, G=0): recall eps/eps = 1
    assert out["CR"] == pytest.approx((0.5 + 1.0) / 2, abs=1e-12)


def test_no_positive_anywhere_reports_zero_map() -> None:
    out = compute_metrics(np.full((4, 3), 0.2), np.zeros((4, 3)))
    assert out["mAP"] == 0.0 and out["mAP_noninterp"] == 0.0
    assert out["labels_without_positives"] == 3
    json.dumps(out, allow_nan=False)


def test_ignored_high_scoring_negative_does_not_lower_ap() -> None:
    scores, targets = _col(0.9, 0.8, 0.7), _col(0, 1, 0)
    # without the mask: negative first -> P=.5 at R=1 -> AP .5
    assert average_precision(scores, targets)[0] == pytest.approx(0.5)
    # ignoring it leaves the positive on top -> AP 1
    assert average_precision(scores, targets, ignore=_col(1, 0, 0))[0] == pytest.approx(1.0)


def test_ignored_positive_is_not_counted() -> None:
    scores, targets = _col(0.9, 0.8, 0.7, 0.6), _col(1, 0, 1, 0)
    ignore = _col(0, 0, 1, 0)
    # remaining 1,0,0: one positive at rank 1 -> AP 1 (it would be 5/6 with the positive)
    assert average_precision(scores, targets, ignore=ignore)[0] == pytest.approx(1.0)
    # threshold .65 predicts ranks 1-3; the ignored rank-3 positive is left out everywhere:
    # TP=1, P=2, G=1 -> precision .5, recall 1
    out = compute_metrics(scores, targets, ignore=ignore, threshold=0.65)
    assert out["CP"] == pytest.approx(0.5) and out["CR"] == pytest.approx(1.0)


@pytest.mark.parametrize("decimals", [None, 1])
def test_noninterp_matches_sklearn(decimals: int | None) -> None:
    from sklearn.metrics import average_precision_score

    scores, targets = _random_case(seed=3, decimals=decimals)
    if decimals is not None:
        assert len(np.unique(scores)) <= 11  # the rounding really produced ties
    expected = [average_precision_score(targets[:, c], scores[:, c])
                for c in range(targets.shape[1])]
    got = average_precision(scores, targets, interpolated=False)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert compute_metrics(scores, targets)["mAP_noninterp"] == pytest.approx(
        np.mean(expected), abs=1e-12)


def test_noninterp_with_ignore_matches_sklearn_on_kept_rows() -> None:
    from sklearn.metrics import average_precision_score

    scores, targets = _random_case(seed=5, decimals=1)
    ignore = (np.random.default_rng(6).random(scores.shape) < 0.3).astype(np.int64)
    ignore[0] = 0  # keep the guaranteed positive of each label
    got = average_precision(scores, targets, ignore=ignore, interpolated=False)
    for c in range(scores.shape[1]):
        keep = ignore[:, c] == 0
        assert got[c] == pytest.approx(
            average_precision_score(targets[keep, c], scores[keep, c]), abs=1e-12)


def _reference_interp_ap(scores: np.ndarray, targets: np.ndarray) -> float:
    """Textbook VOC all-point AP for one label, one threshold per distinct score (slow, clear)."""
    thresholds = np.unique(scores)[::-1]
    hits = [(targets[scores >= th].sum(), (scores >= th).sum()) for th in thresholds]
    recall = np.array([0.0] + [tp / targets.sum() for tp, _ in hits] + [1.0])
    precision = np.array([0.0] + [tp / n for tp, n in hits] + [0.0])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall[:-1]) * precision[1:-1]))


def test_interpolated_matches_textbook_reference_with_ties_and_ignore() -> None:
    scores, targets = _random_case(seed=11, n=120, c=6, decimals=1)
    ignore = (np.random.default_rng(12).random(scores.shape) < 0.25).astype(np.int64)
    ignore[0] = 0
    got = average_precision(scores, targets, ignore=ignore)
    for c in range(scores.shape[1]):
        keep = ignore[:, c] == 0
        assert got[c] == pytest.approx(_reference_interp_ap(scores[keep, c], targets[keep, c]),
                                       abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interpolated_at_least_noninterpolated(seed: int) -> None:
    scores, targets = _random_case(seed=seed, decimals=2)
    interp = average_precision(scores, targets)
    plain = average_precision(scores, targets, interpolated=False)
    assert np.all(interp >= plain - 1e-12)
    assert np.any(interp > plain + 1e-6)  # random rankings are not already monotone


# ------------------------------------------------------------------------ threshold metrics


def test_overall_and_per_class_by_hand() -> None:
    scores = np.array([[0.9, 0.6], [0.7, 0.2], [0.4, 0.8]])
    targets = np.array([[1, 0], [0, 0], [1, 1]])
    # predictions (>= .5): [[1,1],[1,0],[0,1]]
    # label 0: TP=1 P=2 G=2 ; label 1: TP=1 P=2 G=1
    # CP = (1/2 + 1/2)/2 = .5 ; CR = (1/2 + 1)/2 = .75 ; CF1 = 2*.5*.75/1.25 = .6
    # OP = 2/4 = .5 ; OR = 2/3 ; OF1 = 2*.5*(2/3)/(.5 + 2/3) = 4/7
    out = compute_metrics(scores, targets)
    expected = {"CP": 0.5, "CR": 0.75, "CF1": 0.6, "OP": 0.5, "OR": 2 / 3, "OF1": 4 / 7}
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, abs=1e-12), key
    assert out["labels_without_predictions"] == 0 and out["labels_without_positives"] == 0


def test_precision_one_convention_for_unpredicted_label() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.3]])
    targets = np.array([[1, 1], [0, 0]])
    # label 0: TP=P=G=1 -> (1, 1); label 1: nothing predicted, G=1 -> P = eps/eps = 1, R = eps
    out = compute_metrics(scores, targets)
    assert out["CP"] == 1.0  # exactly: the unpredicted label contributes eps/eps
    assert out["CR"] == pytest.approx((1 + EPS) / 2, abs=1e-15)
    assert out["labels_without_predictions"] == 1


def test_f1_is_zero_when_nothing_is_right() -> None:
    # the only prediction is wrong and the only positive is missed: OP = OR = eps-sized
    out = compute_metrics(np.array([[0.9], [0.1]]), np.array([[0], [1]]))
    assert out["OP"] < 1e-15 and out["OR"] < 1e-15 and out["OF1"] < 1e-15
    assert math.isfinite(out["OF1"]) and math.isfinite(out["CF1"])


def test_top3_keeps_only_three_of_five_predictions() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.55]])
    targets = np.ones((1, 5))
    out = compute_metrics(scores, targets)
    # plain threshold: all 5 predicted and right -> OR = 1
    assert out["OR"] == pytest.approx(1.0)
    # top-3: 3 predicted, all right -> OP = 1, OR = 3/5; the two dropped labels get P=eps/eps=1
    # and R=eps/1, so CR = (3 + 2 eps)/5
    assert out["OP_top3"] == pytest.approx(1.0) and out["OR_top3"] == pytest.approx(0.6)
    assert out["CR_top3"] == pytest.approx(0.6, abs=1e-12)
    assert out["labels_without_predictions"] == 0  # counted at the plain threshold


# ---------------------------------------------------------------------------- scene usage


def test_scene_usage_uniform_and_skewed() -> None:
    uniform = np.tile(np.eye(4), (2, 1))  # each of 4 scenes wins twice
    counts, entropy = scene_usage(uniform)
    np.testing.assert_array_equal(counts, [2, 2, 2, 2])
    assert entropy == pytest.approx(math.log(4), abs=1e-12)
    skewed = np.array([[0.7, 0.2, 0.1]] * 3 + [[0.1, 0.8, 0.1]])
    counts, entropy = scene_usage(skewed)
    np.testing.assert_array_equal(counts, [3, 1, 0])
    # freq .75/.25/0 (0 log 0 = 0): -(.75 ln .75 + .25 ln .25) = 0.5623...
    assert entropy == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))


# ------------------------------------------------------------------ compute_metrics contract


def test_compute_metrics_keys_and_ranges() -> None:
    scores, targets = _random_case(seed=7)
    out = compute_metrics(scores, targets, threshold=0.5)
    assert list(out) == EXPECTED_KEYS + COUNT_KEYS
    for key in EXPECTED_KEYS:
        assert isinstance(out[key], float) and 0.0 <= out[key] <= 1.0, key
    for key in COUNT_KEYS:
        assert type(out[key]) is int, key
    assert out["num_images"] == 300 and out["num_labels"] == 12
    scenes = np.random.default_rng(8).random((300, 4))
    with_scenes = compute_metrics(scores, targets, scene_probs=scenes)
    assert list(with_scenes) == EXPECTED_KEYS + ["scene_entropy"] + COUNT_KEYS
    assert with_scenes["scene_entropy"] == pytest.approx(scene_usage(scenes)[1])
    json.dumps(with_scenes, allow_nan=False)


def test_metrics_module_stays_light() -> None:
    code = ("import sys, salgl.metrics; heavy = {'torch', 'sklearn', 'pandas'} & set(sys.modules);"
            " sys.exit(', '.join(sorted(heavy)) or 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------- input errors


def test_shape_mismatch_names_where() -> None:
    with pytest.raises(SalglError, match=r"val_preds: scores has shape \(3, 2\).*targets"):
        check_inputs(np.zeros((3, 2)), np.zeros((3, 3)), where="val_preds")


def test_nan_scores_rejected() -> None:
    scores = np.array([[0.1, np.nan], [0.2, 0.3]])
    with pytest.raises(SalglError, match="predictions: scores contain 1 NaN/inf"):
        compute_metrics(scores, np.zeros((2, 2)))


def test_non_binary_targets_and_bad_ignore_rejected() -> None:
    with pytest.raises(SalglError, match="targets must contain only 0/1"):
        check_inputs(np.zeros((2, 2)), np.full((2, 2), 0.7))
    with pytest.raises(SalglError, match="ignore has shape"):
        check_inputs(np.zeros((2, 2)), np.zeros((2, 2)), ignore=np.zeros((2, 1)))
    with pytest.raises(SalglError, match="scores must be 2-D"):
        check_inputs(np.zeros(4), np.zeros(4))
    with pytest.raises(SalglError, match="scores is empty"):
        compute_metrics(np.zeros((0, 3)), np.zeros((0, 3)))


def test_predictions_file_missing_key(tmp_path) -> None:
    path = tmp_path / "preds.npz"
    np.savez(path, scores=np.zeros((2, 2)))
    with pytest.raises(SalglError, match=r"preds\.npz: missing key 'targets'"):
        Predictions.load(path)


def test_predictions_file_missing_or_broken(tmp_path) -> None:
    with pytest.raises(SalglError, match="nope.npz: predictions file not found"):
        Predictions.load(tmp_path / "nope.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not an archive")
    with pytest.raises(SalglError, match="broken.npz: not an .npz archive"):
        Predictions.load(broken)


def test_metrics_from_file_round_trip(tmp_path) -> None:
    scores, targets = _random_case(seed=9)
    ignore = np.zeros_like(targets)
    ignore[5:10, 0] = 1
    path = tmp_path / "preds.npz"
    np.savez(path, scores=scores, targets=targets, ignore=ignore)
    loaded = Predictions.load(path)
    assert loaded.scene_probs is None and loaded.labels is None
    assert metrics_from_file(path, threshold=0.3) == compute_metrics(scores, targets, ignore,
                                                                     threshold=0.3)


def test_resampled_ap_equals_ap_of_the_resample_written_out() -> None:
    """Bootstrap weights give the AP of the images repeated that often, ties included."""
    from salgl.metrics import average_precision, resampled_average_precision

    rng = np.random.default_rng(3)
    scores = rng.random((150, 4))
    scores[:30, 0] = 0.5  # a run of ties
    scores[:, 3] = np.round(scores[:, 3], 1)  # many runs of ties
    targets = (rng.random((150, 4)) < 0.3).astype(np.uint8)
    counts = rng.multinomial(150, np.full(150, 1 / 150), size=12)
    counts[0] = 1  # the sample itself
    counts[1, targets[:, 2] > 0] = 0  # a resample without positives of label 2
    got = resampled_average_precision(scores, targets, counts)
    for row, weights in zip(got, counts, strict=True):
        drawn = np.repeat(np.arange(150), weights)
        np.testing.assert_allclose(row, average_precision(scores[drawn], targets[drawn]),
                                   equal_nan=True, rtol=1e-12)
    assert np.isnan(got[1, 2])
    with pytest.raises(SalglError, match="weights"):
        resampled_average_precision(scores, targets, counts[:, :10])
