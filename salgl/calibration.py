"""Per-label decision thresholds calibrated on the validation split.

One cut of 0.5 for every label over-predicts on a model whose absent labels already score
around 0.4, so after training each label gets the cut that maximises its F1 on the validation
images. The cuts are stored with the model, used by ``salgl predict`` and reported through
:func:`thresholded_metrics` next to the 0.5 numbers. Like :mod:`salgl.metrics` this module
imports only numpy and is vectorised over images and labels (one sort per label, no Python
loop); inputs are (N images, C labels) with the same ``ignore`` convention: ``ignore[i, c] = 1``
drops image ``i`` from every computation for label ``c``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from salgl.errors import SalglError
from salgl.metrics import METRIC_KEYS, _count_metrics, _valid_mask, check_inputs

log = logging.getLogger("salgl")


def check_thresholds(values: Any, num_labels: int, where: str) -> np.ndarray:
    """A float64 copy of a stored thresholds vector, or a SalglError naming ``where``.

    Thresholds come back from model files and JSON written by other runs, so a wrong length
    (model trained on another label set), NaN or a value outside [0, 1] must fail loudly here
    rather than silently predicting every or no label.
    """
    try:
        out = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SalglError(f"{where}: thresholds are not a numeric vector ({exc})") from exc
    if out.ndim != 1:
        raise SalglError(f"{where}: thresholds must be 1-D (one per label), got shape "
                         f"{out.shape}")
    if out.shape[0] != num_labels:
        raise SalglError(f"{where}: {out.shape[0]} thresholds for {num_labels} labels")
    if not np.isfinite(out).all():
        raise SalglError(f"{where}: thresholds contain {int((~np.isfinite(out)).sum())} "
                         "NaN/inf values")
    outside = (out < 0.0) | (out > 1.0)
    if outside.any():
        raise SalglError(f"{where}: thresholds must lie in [0, 1], found "
                         f"{float(out[outside][0])!r} ({int(outside.sum())} outside)")
    return out


def _check_settings(min_positives: int, floor: float, default: float,
                    tolerance: float = 0.0) -> None:
    """Settings come from params.yaml; a bad one should name itself, not skew every cut."""
    if not isinstance(min_positives, (int, np.integer)) or isinstance(min_positives, bool) \
            or min_positives < 1:
        raise SalglError(f"calibration: min_positives must be an integer >= 1, got "
                         f"{min_positives!r}")
    if not 0.0 <= floor <= 1.0:
        raise SalglError(f"calibration: floor must lie in [0, 1], got {floor!r}")
    if not 0.0 <= tolerance < 1.0:
        raise SalglError(f"calibration: tolerance must lie in [0, 1), got {tolerance!r}")
    if not floor <= default <= 1.0:
        raise SalglError(f"calibration: default must lie in [floor={floor!r}, 1], got "
                         f"{default!r}")


def _f1_optimal_cuts(scores: np.ndarray, targets: np.ndarray, valid: np.ndarray,
                     tolerance: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """F1-optimal cut per label (before shrinkage and clipping) and its count of positives.

    Every label's counted scores are sorted in descending order (ignored pairs are pushed to
    the end as -inf and never become candidates); F1 = 2 TP / (predicted + positives) is read
    at the end of each run of tied scores, i.e. for each distinct score as cut.
    """
    s = np.ascontiguousarray(np.where(valid, scores, -np.inf).T)
    v = np.ascontiguousarray(valid.T)
    order = np.argsort(-s, axis=1, kind="stable")
    s_sorted = np.take_along_axis(s, order, axis=1)
    v_sorted = np.take_along_axis(v, order, axis=1)
    y_sorted = np.take_along_axis(np.ascontiguousarray(targets.T > 0) & v, order, axis=1)
    tp = np.cumsum(y_sorted, axis=1, dtype=np.int64)
    cnt = np.cumsum(v_sorted, axis=1, dtype=np.int64)
    npos = tp[:, -1]
    is_end = v_sorted.copy()
    is_end[:, :-1] &= s_sorted[:, 1:] != s_sorted[:, :-1]
    f1 = np.where(is_end, 2.0 * tp / np.maximum(cnt + npos[:, None], 1), -1.0)
    # the first candidate within ``tolerance`` of the best F1 = the highest such cut
    best = np.argmax(f1 >= f1.max(axis=1, keepdims=True) - tolerance, axis=1)
    rows = np.arange(s.shape[0])
    upper = s_sorted[rows, best]
    nxt = np.minimum(best + 1, s.shape[1] - 1)
    has_lower = (best + 1 < s.shape[1]) & v_sorted[rows, nxt]
    lower = np.where(has_lower, s_sorted[rows, nxt], np.minimum(0.0, upper))
    with np.errstate(invalid="ignore"):  # labels with nothing counted: -inf; replaced below
        mid = 0.5 * (upper + lower)
        cut = np.where(mid > lower, mid, upper)  # adjacent floats: keep the exact score
    return np.where(np.isfinite(cut), cut, 0.0), npos


def calibrate_thresholds(scores: Any, targets: Any, ignore: Any = None, *,
                         min_positives: int = 5, floor: float = 0.05,
                         default: float = 0.5, tolerance: float = 0.01,
                         labels: Sequence[str] | None = None) -> np.ndarray:
    """Per-label cuts (float64, shape (C,)) maximising each label's F1 on these images.

    Prediction is ``score >= cut``. Candidate cuts are the label's distinct counted scores;
    the highest candidate whose F1 lies within ``tolerance`` of the label's best F1 wins
    (0: the highest among equal maxima). F1 optima sit on flat plateaus, and the lowest
    corner of a plateau predicts many more labels for a difference of F1 that a validation
    split cannot resolve: on the default model the exact optimum predicted 1.27 times the
    true label count on the test split, the 0.01 plateau rule 1.10 times (CF1 0.602 and
    0.598). The returned cut is
    not that score itself but the midpoint between it and the next lower distinct counted
    score (0 below the lowest score), so it makes exactly the same predictions on these images
    while leaving a margin on both sides for new ones.

    A label with ``npos`` counted positives, fewer than ``min_positives``, is shrunk towards
    ``default``: ``cut = w * f1_cut + (1 - w) * default`` with ``w = npos / min_positives``,
    so a label with no positive at all (or every pair ignored) gets ``default``; one positive
    is too little evidence to trust an optimum. Finally cuts are clipped to ``[floor, 1]`` so
    no label is predicted on every image. Ignored pairs neither count nor become candidates.
    With ``labels``, the labels so shrunk are named in one warning.
    """
    check_inputs(scores, targets, ignore, where="calibration")
    _check_settings(min_positives, floor, default, tolerance)
    s = np.asarray(scores, dtype=np.float64)
    valid = _valid_mask(s.shape, ignore)
    cut, npos = _f1_optimal_cuts(s, np.asarray(targets), valid, tolerance)
    if labels is not None:
        _warn_few_positives(labels, npos, min_positives, default)
    weight = np.minimum(npos, min_positives) / float(min_positives)
    blended = weight * cut + (1.0 - weight) * default
    return np.clip(blended, floor, 1.0).astype(np.float64)


def _warn_few_positives(labels: Sequence[str], npos: np.ndarray, min_positives: int,
                        default: float) -> None:
    few = [(name, int(n)) for name, n in zip(labels, npos, strict=True) if n < min_positives]
    if few:
        shown = ", ".join(f"{name} ({n})" for name, n in few[:10])
        more = f" and {len(few) - 10} more" if len(few) > 10 else ""
        log.warning("calibration: %d label(s) have fewer than %d positives in the validation "
                    "split: %s%s; their thresholds lean towards %.1f (n/%d of the way from "
                    "it to their best F1 cut); more validation images make them their own",
                    len(few), min_positives, shown, more, default, min_positives)


def thresholded_metrics(scores: Any, targets: Any, thresholds: Any,
                        ignore: Any = None) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 with prediction = ``score >= thresholds[c]`` per label.

    Same definitions as :func:`salgl.metrics.compute_metrics` (shared counting code), so the
    calibrated numbers in the metrics JSON compare directly with the 0.5 ones.
    """
    check_inputs(scores, targets, ignore, where="thresholded metrics")
    s = np.asarray(scores, dtype=np.float64)
    cuts = check_thresholds(thresholds, s.shape[1], "thresholded metrics")
    counts = _count_metrics(s >= cuts[None, :], np.asarray(targets),
                            _valid_mask(s.shape, ignore))
    return {key: float(counts[key]) for key in METRIC_KEYS}
