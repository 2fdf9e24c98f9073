"""Paired bootstrap over test images: how much a test-mAP difference owes to which test
images were drawn. Every resample draws the same images for both variants and every seed
(they were scored on the same test split), so the interval is paired; the seeds' spread is
the t bound's business (reading.py), not this one's."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from salgl.metrics import resampled_average_precision


def resample_counts(num_images: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """(samples, num_images): how often each resample draws each image."""
    return rng.multinomial(num_images, np.full(num_images, 1.0 / num_images), size=samples)


def resampled_map(scores: np.ndarray, targets: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """mAP of each resample (labels without a drawn positive are left out, as in mean_ap)."""
    ap = resampled_average_precision(scores, targets, counts)
    return np.nanmean(ap, axis=1)


def mean_difference_samples(first: Sequence[np.ndarray], second: Sequence[np.ndarray],
                            targets: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per resample, the mean over paired seeds of mAP(first) - mAP(second)."""
    diffs = [resampled_map(a, targets, counts) - resampled_map(b, targets, counts)
             for a, b in zip(first, second, strict=True)]
    return np.mean(diffs, axis=0)


def interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided percentile interval."""
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)
