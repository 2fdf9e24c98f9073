"""Per-label threshold calibration (salgl.calibration): optimality, shrinkage, ignore, checks."""

from __future__ import annotations

import numpy as np
import pytest

from salgl.calibration import calibrate_thresholds, check_thresholds, thresholded_metrics
from salgl.errors import SalglError
from salgl.metrics import METRIC_KEYS, compute_metrics


def label_f1(scores: np.ndarray, targets: np.ndarray, cut: float,
             valid: np.ndarray | None = None) -> float:
    """Plain F1 of one label's column at one cut, counting only valid images."""
    keep = np.ones(scores.shape, dtype=bool) if valid is None else valid
    pred = (scores >= cut) & keep
    truth = (targets > 0) & keep
    den = pred.sum() + truth.sum()
    return 2.0 * float((pred & truth).sum()) / den if den else 0.0


def random_case(seed: int, n: int = 60, c: int = 8) -> tuple[np.ndarray, ...]:
    """Rounded scores (many ties), targets correlated with scores, and a sparse ignore mask."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.3).astype(np.float64)
    scores = np.clip(0.35 + 0.25 * targets + rng.normal(0.0, 0.15, (n, c)), 0.0, 1.0)
    scores = np.round(scores, 2)
    ignore = (rng.random((n, c)) < 0.1).astype(np.float64)
    return scores, targets, ignore


def demo_like_case(seed: int = 0, n: int = 400, c: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Like the demo model: absent labels score around 0.4, present ones around 0.7."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.2).astype(np.float64)
    scores = np.where(targets > 0, 0.7, 0.4) + rng.normal(0.0, 0.08, (n, c))
    return np.clip(scores, 0.0, 1.0), targets


def test_separable_label_gets_a_separating_cut() -> None:
    scores = np.array([[0.9], [0.8], [0.75], [0.3], [0.2], [0.1]])
    targets = np.array([[1], [1], [1], [0], [0], [0]], dtype=np.float64)
    cut = calibrate_thresholds(scores, targets, min_positives=1)
    assert cut.dtype == np.float64 and cut.shape == (1,)
    assert 0.3 < cut[0] < 0.75
    assert cut[0] == pytest.approx(0.525)  # midpoint of the gap (tie rule)
    assert label_f1(scores[:, 0], targets[:, 0], cut[0]) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cut_is_f1_optimal_against_brute_force(seed: int) -> None:
    scores, targets, ignore = random_case(seed)
    cuts = calibrate_thresholds(scores, targets, ignore, min_positives=1, floor=0.0,
                                tolerance=0.0)
    valid = ignore == 0
    grid = np.linspace(0.0, 1.0, 2001)
    for c in range(scores.shape[1]):
        col, tcol, vcol = scores[:, c], targets[:, c], valid[:, c]
        candidates = np.union1d(grid, col)  # every distinct score too: exhaustive
        brute = max(label_f1(col, tcol, g, vcol) for g in candidates)
        assert label_f1(col, tcol, cuts[c], vcol) >= brute - 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plateau_rule_takes_the_highest_cut_near_the_best_f1(seed: int) -> None:
    """Default tolerance 0.01: F1 within 0.01 of the best, and no higher score qualifies."""
    scores, targets, ignore = random_case(seed)
    cuts = calibrate_thresholds(scores, targets, ignore, min_positives=1, floor=0.0)
    exact = calibrate_thresholds(scores, targets, ignore, min_positives=1, floor=0.0,
                                 tolerance=0.0)
    valid = ignore == 0
    for c in range(scores.shape[1]):
        col, tcol, vcol = scores[:, c], targets[:, c], valid[:, c]
        distinct = np.unique(col[vcol])
        f1 = {s: label_f1(col, tcol, s, vcol) for s in distinct}
        best = max(f1.values())
        assert label_f1(col, tcol, cuts[c], vcol) >= best - 0.01 - 1e-12
        chosen = distinct[distinct >= cuts[c]].min()  # the cut sits just below its score
        assert all(f < best - 0.01 for s, f in f1.items() if s > chosen)
        assert cuts[c] >= exact[c]


def test_ignored_pair_cannot_influence_its_cut() -> None:
    scores, targets, ignore = random_case(3)
    base = calibrate_thresholds(scores, targets, ignore)
    rng = np.random.default_rng(99)
    changed_s, changed_t = scores.copy(), targets.copy()
    hit = ignore > 0
    changed_s[hit] = rng.random(int(hit.sum()))
    changed_t[hit] = 1.0 - changed_t[hit]
    np.testing.assert_array_equal(calibrate_thresholds(changed_s, changed_t, ignore), base)
    # Ignoring a pair equals dropping that image from that label alone.
    for c in range(scores.shape[1]):
        keep = ignore[:, c] == 0
        alone = calibrate_thresholds(scores[keep, c:c + 1], targets[keep, c:c + 1])
        assert alone[0] == base[c]


def test_ignore_changes_the_cut_as_expected() -> None:
    scores = np.array([[0.9], [0.8], [0.6], [0.3], [0.1]])
    targets = np.array([[1], [1], [0], [1], [0]], dtype=np.float64)
    # All counted: best F1 6/7 predicts down to 0.3, cut halfway to 0.1.
    assert calibrate_thresholds(scores, targets, min_positives=1)[0] == pytest.approx(0.2)
    # The low positive ignored: 0.9 and 0.8 alone give F1 = 1, cut halfway to 0.6.
    ignore = np.array([[0], [0], [0], [1], [0]], dtype=np.float64)
    cut = calibrate_thresholds(scores, targets, ignore, min_positives=1)[0]
    assert cut == pytest.approx(0.7)


def test_labels_without_positives_get_default() -> None:
    scores, targets, ignore = random_case(4)
    targets[:, 2] = 0.0
    ignore[:, 5] = 1.0  # every pair ignored: no counted positive either
    for default in (0.5, 0.3):
        cuts = calibrate_thresholds(scores, targets, ignore, default=default)
        assert cuts[2] == default and cuts[5] == default


def test_few_positives_are_pulled_towards_default() -> None:
    scores = np.array([[0.9, 0.9], [0.85, 0.85], [0.2, 0.2], [0.1, 0.1]])
    targets = np.array([[1, 1], [1, 1], [0, 0], [0, 0]], dtype=np.float64)
    scores[:, 1] = [0.3, 0.28, 0.2, 0.1]  # same ranking, optimum far below default
    free = calibrate_thresholds(scores, targets, min_positives=1)
    shrunk = calibrate_thresholds(scores, targets, min_positives=5, default=0.5)
    np.testing.assert_allclose(shrunk, 0.4 * free + 0.6 * 0.5)  # weight = 2 positives / 5
    assert np.all(np.abs(shrunk - 0.5) < np.abs(free - 0.5))
    # Enough positives: no shrinkage.
    np.testing.assert_array_equal(calibrate_thresholds(scores, targets, min_positives=2), free)


def test_cuts_respect_floor_and_one() -> None:
    # Every image positive with tiny scores: the optimum predicts all, well below any floor.
    low = np.array([[0.03], [0.02], [0.01]])
    ones = np.ones((3, 1))
    assert calibrate_thresholds(low, ones, min_positives=1)[0] == 0.05
    assert calibrate_thresholds(low, ones, min_positives=1, floor=0.1)[0] == 0.1
    assert calibrate_thresholds(low, ones, min_positives=1, floor=0.0)[0] == pytest.approx(0.005)
    # Out-of-range scores still give a cut of at most 1.
    high = np.array([[2.0], [1.5], [0.2]])
    assert calibrate_thresholds(high, np.array([[1.0], [0.0], [0.0]]), min_positives=1)[0] == 1.0
    scores, targets, ignore = random_case(5)
    cuts = calibrate_thresholds(scores, targets, ignore, floor=0.3)
    assert np.all((cuts >= 0.3) & (cuts <= 1.0))


def test_bad_settings_name_themselves() -> None:
    scores, targets, _ = random_case(6)
    with pytest.raises(SalglError, match="min_positives"):
        calibrate_thresholds(scores, targets, min_positives=0)
    with pytest.raises(SalglError, match="default"):
        calibrate_thresholds(scores, targets, floor=0.6, default=0.5)
    with pytest.raises(SalglError, match="calibration: scores has shape"):
        calibrate_thresholds(scores, targets[:, :3])


def test_thresholded_metrics_at_half_equal_the_plain_metrics() -> None:
    scores, targets, ignore = random_case(7)
    half = np.full(scores.shape[1], 0.5)
    for mask in (None, ignore):
        ours = thresholded_metrics(scores, targets, half, mask)
        ref = compute_metrics(scores, targets, mask, threshold=0.5)
        assert list(ours) == list(METRIC_KEYS)
        for key in METRIC_KEYS:
            assert ours[key] == ref[key]


def test_calibrated_cuts_do_not_lower_f1_on_calibration_data() -> None:
    scores, targets, ignore = random_case(8)
    cuts = calibrate_thresholds(scores, targets, ignore, min_positives=1, floor=0.0)
    valid = ignore == 0
    for c in range(scores.shape[1]):  # the guaranteed property: each label's own F1
        assert (label_f1(scores[:, c], targets[:, c], cuts[c], valid[:, c])
                >= label_f1(scores[:, c], targets[:, c], 0.5, valid[:, c]) - 1e-12)
    demo_s, demo_t = demo_like_case(1)
    for s, t, m in ((scores, targets, ignore), (demo_s, demo_t, None)):
        calibrated = calibrate_thresholds(s, t, m)
        ours = thresholded_metrics(s, t, calibrated, m)
        assert ours["CF1"] >= compute_metrics(s, t, m, 0.5)["CF1"]


def test_demo_like_scores_get_cuts_between_absent_and_present() -> None:
    scores, targets = demo_like_case()
    cuts = calibrate_thresholds(scores, targets)
    assert np.all((cuts > 0.4) & (cuts < 0.7))
    at_half = compute_metrics(scores, targets, threshold=0.5)
    calibrated = thresholded_metrics(scores, targets, cuts)
    assert calibrated["OP"] > at_half["OP"]
    assert calibrated["OF1"] > at_half["OF1"]
    n_true = targets.sum()
    ratio_half = (scores >= 0.5).sum() / n_true
    ratio_cal = (scores >= cuts).sum() / n_true
    assert abs(ratio_cal - 1.0) < abs(ratio_half - 1.0)


@pytest.mark.parametrize(("values", "message"), [
    ([[0.5, 0.5]], "must be 1-D"),
    ([0.5, 0.5], "2 thresholds for 3 labels"),
    ([0.5, float("nan"), 0.5], "NaN/inf"),
    ([0.5, 1.2, 0.5], r"lie in \[0, 1\]"),
    ([0.5, -0.1, 0.5], r"lie in \[0, 1\]"),
    (["a", "b", "c"], "not a numeric vector"),
])
def test_check_thresholds_errors_name_where(values: list, message: str) -> None:
    with pytest.raises(SalglError, match=message) as info:
        check_thresholds(values, 3, "model.safetensors")
    assert str(info.value).startswith("model.safetensors: ")


def test_check_thresholds_returns_float_copy() -> None:
    stored = np.array([0.0, 0.5, 1.0], dtype=np.float32)
    out = check_thresholds(stored, 3, "model file")
    assert out.dtype == np.float64 and out is not stored
    np.testing.assert_array_equal(out, [0.0, 0.5, 1.0])


def test_labels_with_few_validation_positives_are_named_in_one_warning(caplog) -> None:
    import logging

    scores = np.array([[0.9, 0.2, 0.7], [0.1, 0.8, 0.6], [0.8, 0.3, 0.1], [0.7, 0.9, 0.2],
                       [0.6, 0.1, 0.3], [0.85, 0.2, 0.4], [0.95, 0.3, 0.2]])
    targets = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 0, 0],
                        [1, 0, 0]])
    with caplog.at_level(logging.WARNING, logger="salgl"):
        cuts = calibrate_thresholds(scores, targets, labels=["cat", "dog", "cup"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["calibration: 2 label(s) have fewer than 5 positives in the validation "
                        "split: dog (2), cup (1); their thresholds lean towards 0.5 (n/5 of "
                        "the way from it to their best F1 cut); more validation images make "
                        "them their own"]
    assert np.array_equal(cuts, calibrate_thresholds(scores, targets))  # same cuts, said aloud
