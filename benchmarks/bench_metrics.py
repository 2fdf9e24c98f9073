"""Time salgl.metrics.compute_metrics at COCO size, against a per-label sklearn AP loop,
and `salgl metrics FILE.npz` as a whole process (interpreter start-up and imports included).

Run: python benchmarks/bench_metrics.py --images 40137 --labels 80 --repeat 5 --seed 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from salgl.metrics import compute_metrics


def make_data(images: int, labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random COCO-like predictions: ~3% prevalence, scores rounded to 3 decimals for ties."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((images, labels)) < 0.03).astype(np.int64)
    logits = rng.normal(size=(images, labels)) + 2.0 * targets - 2.0
    scores = np.round(1.0 / (1.0 + np.exp(-logits)), 3)
    return scores, targets


def time_compute_metrics(scores: np.ndarray, targets: np.ndarray, repeat: int) -> float:
    """Median wall time of compute_metrics over `repeat` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        compute_metrics(scores, targets)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_sklearn_ap(scores: np.ndarray, targets: np.ndarray) -> float:
    """One pass of sklearn's average_precision_score looped over labels (the usual baseline)."""
    from sklearn.metrics import average_precision_score

    start = time.perf_counter()
    for c in range(scores.shape[1]):
        average_precision_score(targets[:, c], scores[:, c])
    return time.perf_counter() - start


def time_cli(scores: np.ndarray, targets: np.ndarray, repeat: int) -> float:
    """Median wall time of the whole `salgl metrics` process on a saved predictions file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.npz"
        np.savez(path, scores=scores.astype(np.float32), targets=targets.astype(np.uint8))
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "salgl.cli", "metrics", str(path)],
                           check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=40137)
    parser.add_argument("--labels", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scores, targets = make_data(args.images, args.labels, args.seed)
    result = {
        "images": args.images,
        "labels": args.labels,
        "repeat": args.repeat,
        "compute_metrics_median_s": round(time_compute_metrics(scores, targets, args.repeat), 4),
        "sklearn_ap_loop_s": round(time_sklearn_ap(scores, targets), 4),
        "salgl_metrics_process_median_s": round(time_cli(scores, targets, args.repeat), 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
