"""The predictions file: one home for its format, its one writer and its readers.

``data/predictions/DATASET.npz``, written by the evaluate stage, is a NumPy .npz archive (never
pickled) of one test split's scores with what is needed to read them on another machine:

- ``scores`` (N, C) float32: sigmoid label scores
- ``targets`` (N, C) uint8: the annotated labels
- ``scene_probs`` (N, S) float32: the learned scene probabilities (optional)
- ``labels`` (C,) str: label names (optional)
- ``paths`` (N,) str: image paths as the prepared lists show them (optional)
- ``ignore`` (N, C) uint8: 1 where a pair is unannotated and left out of every metric (optional)

Only numpy and the standard library are imported here (and salgl.metrics by
``metrics_from_file``), so `salgl metrics` starts fast.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from salgl.atomic import atomic_path
from salgl.errors import SalglError
from salgl.npy_files import check_npz

REQUIRED = ("scores", "targets")
OPTIONAL = ("scene_probs", "labels", "paths", "ignore")
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


@dataclass
class Predictions:
    scores: np.ndarray
    targets: np.ndarray
    scene_probs: np.ndarray | None = None
    labels: list[str] | None = None
    paths: list[str] | None = None
    ignore: np.ndarray | None = None

    def save(self, path: str | Path) -> None:
        """Write the archive whole under a temporary name, then rename it into place."""
        arrays = {"scores": self.scores.astype(np.float32),
                  "targets": self.targets.astype(np.uint8)}
        if self.scene_probs is not None:
            arrays["scene_probs"] = self.scene_probs.astype(np.float32)
        if self.labels is not None:
            arrays["labels"] = np.array(self.labels)
        if self.paths is not None:
            arrays["paths"] = np.array(self.paths)
        if self.ignore is not None:
            arrays["ignore"] = self.ignore.astype(np.uint8)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Predictions:
        """Read an archive, never unpickling; every problem names the file (and the key)."""
        path = Path(path)
        if not path.is_file():
            raise SalglError(f"{path}: predictions file not found")
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic != b"PK\x03\x04":  # every .npz is a zip archive
            raise SalglError(f"{path}: not an .npz archive (expected a NumPy .npz with keys "
                             "scores and targets, as `salgl evaluate` writes)")
        check_npz(path)
        try:
            data = np.load(path, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise SalglError(f"{path}: cannot read predictions file ({exc})") from exc
        if not hasattr(data, "files"):
            raise SalglError(f"{path}: expected an .npz archive with keys scores, targets")
        with data:
            arrays = {key: _read_key(data, key, path, required=key in REQUIRED)
                      for key in (*REQUIRED, *OPTIONAL)}
        for key in ("labels", "paths"):
            if arrays[key] is not None:
                arrays[key] = [str(s) for s in arrays[key]]
        return cls(**arrays)

    def label_names(self) -> list[str]:
        """The stored label names, or label_0, label_1, ... when they are missing or do not
        match the score columns."""
        num = self.scores.shape[1]
        labels = self.labels or []
        return labels if len(labels) == num else [f"label_{i}" for i in range(num)]


def _read_key(data, key: str, path: Path, required: bool) -> np.ndarray | None:
    """One array from an open .npz; a missing required key names the file and the key."""
    if key not in data.files:
        if required:
            raise SalglError(f"{path}: missing key '{key}' (found: {', '.join(data.files)})")
        return None
    try:
        return data[key]
    except _READ_ERRORS as exc:
        raise SalglError(f"{path}: cannot read key '{key}' ({exc})") from exc


def metrics_from_file(path: str | Path, threshold: float = 0.5) -> dict[str, Any]:
    """Metrics of a saved predictions file (what the CLI's evaluate step reports)."""
    from salgl.metrics import compute_metrics

    data = Predictions.load(path)
    try:
        return compute_metrics(data.scores, data.targets, data.ignore, threshold,
                               data.scene_probs)
    except SalglError as exc:
        raise SalglError(f"{path}: {exc}") from exc
