"""Evaluation contract: per-label AP, mAP and the threshold/top-3 precision-recall family.

Only numpy and the standard library are imported here, so the CLI that reports metrics starts
fast. Everything is vectorised over images (and labels); inputs are (N images, C labels):
sigmoid ``scores``, 0/1 ``targets`` and an optional 0/1 ``ignore`` mask where
``ignore[i, c] = 1`` drops image ``i`` from every computation for label ``c``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from salgl.errors import SalglError

EPS = float(np.finfo(np.float64).eps)
TOPK = 3
METRIC_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")


# ----------------------------------------------------------------------------- input checks


def _as_2d(arr: Any, name: str, where: str) -> np.ndarray:
    """A float64 2-D array, or a SalglError naming the array (strings, ragged lists, 1-D...)."""
    try:
        out = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SalglError(f"{where}: {name} is not a numeric array ({exc})") from exc
    if out.ndim != 2:
        raise SalglError(f"{where}: {name} must be 2-D (images, labels), got shape {out.shape}")
    return out


def _check_binary(arr: np.ndarray, name: str, where: str) -> None:
    """Targets/ignore must be exactly 0/1; anything else is probably scores passed by mistake."""
    bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        value = arr[bad].flat[0]
        raise SalglError(f"{where}: {name} must contain only 0/1, found {value!r} "
                         f"({int(bad.sum())} bad entries)")


def check_inputs(scores: Any, targets: Any, ignore: Any = None,
                 where: str = "predictions") -> None:
    """Fail early with one clear message instead of a silent NaN or broadcasting surprise."""
    s = _as_2d(scores, "scores", where)
    t = _as_2d(targets, "targets", where)
    if s.shape != t.shape:
        raise SalglError(f"{where}: scores has shape {s.shape} but targets has shape {t.shape}")
    if s.size == 0:
        raise SalglError(f"{where}: scores is empty (shape {s.shape}); nothing to evaluate")
    if not np.isfinite(s).all():
        raise SalglError(f"{where}: scores contain {int((~np.isfinite(s)).sum())} NaN/inf "
                         "values")
    _check_binary(t, "targets", where)
    if ignore is not None:
        m = _as_2d(ignore, "ignore", where)
        if m.shape != s.shape:
            raise SalglError(f"{where}: ignore has shape {m.shape} but scores has shape "
                             f"{s.shape}")
        _check_binary(m, "ignore", where)


def _check_scene_probs(scene_probs: Any, num_images: int, where: str) -> np.ndarray:
    """Scene probabilities must be one finite row per image."""
    p = _as_2d(scene_probs, "scene_probs", where)
    if p.shape[0] != num_images:
        raise SalglError(f"{where}: scene_probs has {p.shape[0]} rows but scores has "
                         f"{num_images} images")
    if not np.isfinite(p).all():
        raise SalglError(f"{where}: scene_probs contain NaN/inf values")
    return p


def _valid_or_none(ignore: Any) -> np.ndarray | None:
    """Boolean mask of the (image, label) pairs that count; None when all do (faster paths)."""
    return None if ignore is None else np.asarray(ignore) == 0


def _valid_mask(shape: tuple[int, ...], ignore: Any) -> np.ndarray:
    """Boolean mask of the (image, label) pairs that count, always materialised."""
    valid = _valid_or_none(ignore)
    return np.ones(shape, dtype=bool) if valid is None else valid


# ----------------------------------------------------------------------- average precision


def _ranked_group_ends(scores: np.ndarray, targets: np.ndarray,
                       valid: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Label, TP and counted images at the end of each run of tied scores, plus positives.

    Precision/recall are read only at the end of a run of equal scores, so AP does not depend
    on how the sort orders ties (scikit-learn does the same through its thresholds). Sorting is
    label-major on a contiguous copy: one fast row sort per label, no loop in Python.
    """
    s = np.ascontiguousarray(scores.T)
    order = np.argsort(s, axis=1)[:, ::-1]  # descending; tie order is irrelevant (see above)
    s_sorted = np.take_along_axis(s, order, axis=1)
    y_sorted = np.take_along_axis(np.ascontiguousarray(targets.T > 0), order, axis=1)
    is_end = np.ones(s_sorted.shape, dtype=bool)
    is_end[:, :-1] = s_sorted[:, 1:] != s_sorted[:, :-1]
    rows, cols = np.nonzero(is_end)
    if valid is None:
        tp = np.cumsum(y_sorted, axis=1, dtype=np.int64)
        cnt = (cols + 1).astype(np.float64)
    else:
        v_sorted = np.take_along_axis(np.ascontiguousarray(valid.T), order, axis=1)
        tp = np.cumsum(y_sorted & v_sorted, axis=1, dtype=np.int64)
        cnt = np.cumsum(v_sorted, axis=1, dtype=np.int64)[rows, cols].astype(np.float64)
    return rows, tp[rows, cols].astype(np.float64), cnt, tp[:, -1].astype(np.float64)


def _row_suffix_max(rows: np.ndarray, values: np.ndarray, num_rows: int) -> np.ndarray:
    """Running max from the right within each row of a row-sorted flat array (exact, padded)."""
    starts = np.searchsorted(rows, np.arange(num_rows))
    pos = np.arange(rows.size) - starts[rows]
    width = int(pos.max()) + 1 if rows.size else 0
    padded = np.zeros((num_rows, width))
    padded[rows, pos] = values
    return np.maximum.accumulate(padded[:, ::-1], axis=1)[:, ::-1][rows, pos]


def _ap_both(scores: np.ndarray, targets: np.ndarray,
             valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated and non-interpolated per-label AP from one sort.

    Only group ends that add positives move recall, and only they can hold a precision maximum
    (precision falls while no positive is added), so both sums run over those ends alone.
    """
    num_labels = scores.shape[1]
    if scores.shape[0] == 0:
        return np.full(num_labels, np.nan), np.full(num_labels, np.nan)
    rows, tp, cnt, npos = _ranked_group_ends(scores, targets, valid)
    gain = np.diff(tp, prepend=0.0)
    first = np.ones(rows.size, dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    gain[first] = tp[first]
    keep = gain > 0
    rows, gain = rows[keep], gain[keep]
    precision = tp[keep] / cnt[keep]  # cnt >= tp > 0 at these ends
    interp_precision = _row_suffix_max(rows, precision, num_labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        plain = np.bincount(rows, gain * precision, minlength=num_labels) / npos
        interp = np.bincount(rows, gain * interp_precision, minlength=num_labels) / npos
    plain[npos == 0] = np.nan
    interp[npos == 0] = np.nan
    return interp, plain


def average_precision(scores: Any, targets: Any, ignore: Any = None,
                      interpolated: bool = True) -> np.ndarray:
    """Per-label AP (C,), NaN where a label has no counted positive.

    ``interpolated=True`` is the VOC 2010+ all-point rule (precision made non-increasing from
    the right); ``False`` equals ``sklearn.metrics.average_precision_score``.
    """
    interp, plain = average_precisions(scores, targets, ignore)
    return interp if interpolated else plain


def average_precisions(scores: Any, targets: Any, ignore: Any = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated and non-interpolated per-label AP from one ranking."""
    s = np.asarray(scores, dtype=np.float64)
    return _ap_both(s, np.asarray(targets), _valid_or_none(ignore))


def resampled_average_precision(scores: Any, targets: Any, weights: Any) -> np.ndarray:
    """Interpolated per-label AP (B, C) of B resamples of the images, without writing them out.

    ``weights`` (B, N) says how often each resample draws each image (a bootstrap's counts);
    row b equals ``average_precision`` of the images repeated that often. Ties, repeats
    included, are read at the end of their run as there, and a zero weight drops an image.
    One sort per label serves every resample, so a paired bootstrap over thousands of
    resamples takes seconds.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(targets) > 0
    w = np.asarray(weights, dtype=np.float64)
    if s.ndim != 2 or y.shape != s.shape or w.ndim != 2 or w.shape[1] != s.shape[0]:
        raise SalglError(f"resampled AP: scores {s.shape}, targets {y.shape} and weights "
                         f"{w.shape} must be (N, C), (N, C) and (B, N)")
    out = np.full((w.shape[0], s.shape[1]), np.nan)
    for label in range(s.shape[1]):
        order = np.argsort(-s[:, label], kind="stable")
        ranked = s[order, label]
        ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
        drawn = w[:, order]
        counted = np.cumsum(drawn, axis=1)[:, ends]
        tp = np.cumsum(drawn * y[order, label], axis=1)[:, ends]
        gain = np.diff(tp, axis=1, prepend=0.0)
        precision = np.divide(tp, counted, out=np.zeros_like(tp), where=counted > 0)
        # only ends that add positives carry weight, and precision falls between them
        interp = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        positives = tp[:, -1]
        has = positives > 0
        out[has, label] = (gain * interp).sum(axis=1)[has] / positives[has]
    return out


def mean_ap(ap: np.ndarray) -> float:
    """nanmean over labels with positives; 0.0 (not NaN) when none, so JSON stays valid."""
    finite = ap[np.isfinite(ap)]
    return float(finite.mean()) if finite.size else 0.0


# ----------------------------------------------------------------- threshold-based metrics


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """Released convention: eps floor on both sides, so 0/0 counts as 1."""
    return np.maximum(num, EPS) / np.maximum(den, EPS)


def _f1(p: float, r: float) -> float:
    """Harmonic mean, 0 when both precision and recall are 0."""
    return 2.0 * p * r / (p + r) if p + r > 0 else 0.0


def _count_metrics(pred: np.ndarray, targets: np.ndarray, valid: np.ndarray) -> dict[str, Any]:
    """CP/CR/CF1 (per-label means) and OP/OR/OF1 (pooled) from boolean predictions."""
    truth = (targets > 0) & valid
    pred = pred & valid
    tp = np.sum(pred & truth, axis=0, dtype=np.float64)
    npred = np.sum(pred, axis=0, dtype=np.float64)
    ngt = np.sum(truth, axis=0, dtype=np.float64)
    cp, cr = float(np.mean(_ratio(tp, npred))), float(np.mean(_ratio(tp, ngt)))
    op, o_r = float(_ratio(tp.sum(), npred.sum())), float(_ratio(tp.sum(), ngt.sum()))
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": o_r, "OF1": _f1(op, o_r),
            "labels_without_predictions": int(np.sum(npred == 0)),
            "labels_without_positives": int(np.sum(ngt == 0))}


def _topk_bool(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of each row's k highest scores (ties at the k-th place broken arbitrarily)."""
    n, c = scores.shape
    if c <= k:
        return np.ones((n, c), dtype=bool)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    mask = np.zeros((n, c), dtype=bool)
    np.put_along_axis(mask, top, True, axis=1)
    return mask


# ----------------------------------------------------------------------------- scene usage


def scene_usage(scene_probs: Any) -> tuple[np.ndarray, float]:
    """How often each scene wins the argmax, and the entropy (nats) of that histogram.

    Low entropy means the model collapsed onto few scenes.
    """
    p = np.asarray(scene_probs, dtype=np.float64)
    if p.shape[0] == 0:
        return np.zeros(p.shape[1], dtype=np.int64), 0.0
    counts = np.bincount(np.argmax(p, axis=1), minlength=p.shape[1])
    total = counts.sum()
    freq = counts[counts > 0] / total
    return counts, float(-np.sum(freq * np.log(freq)))


# ------------------------------------------------------------------------------ entry points


def compute_metrics(scores: Any, targets: Any, ignore: Any = None, threshold: float = 0.5,
                    scene_probs: Any = None) -> dict[str, Any]:
    """The flat, JSON-ready metric dict of the evaluation contract (fixed key order)."""
    check_inputs(scores, targets, ignore)
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    valid = _valid_mask(s.shape, ignore)
    interp, plain_ap = _ap_both(s, t, _valid_or_none(ignore))
    out: dict[str, Any] = {"mAP": mean_ap(interp), "mAP_noninterp": mean_ap(plain_ap)}
    plain = _count_metrics(s >= threshold, t, valid)
    top = _count_metrics(_topk_bool(s, TOPK) & (s >= threshold), t, valid)
    out.update({key: plain[key] for key in METRIC_KEYS})
    out.update({f"{key}_top3": top[key] for key in METRIC_KEYS})
    if scene_probs is not None:
        out["scene_entropy"] = scene_usage(_check_scene_probs(scene_probs, s.shape[0],
                                                              "predictions"))[1]
    out.update({"num_images": int(s.shape[0]), "num_labels": int(s.shape[1]),
                "labels_without_positives": plain["labels_without_positives"],
                "labels_without_predictions": plain["labels_without_predictions"]})
    return out
