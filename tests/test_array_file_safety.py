"""NumPy files that claim more than they hold (issue 20, finding 7): refused from the header,
before anything is allocated, with one line naming the file."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from tree_snapshot import changes, tree_snapshot

from salgl.errors import SalglError
from salgl.npy_files import load_npy

HUGE = (400_000_000_000, 3)  # 4.4 TiB of float32


def npy_bytes(claimed: tuple[int, ...], data: np.ndarray) -> bytes:
    """A .npy whose header claims ``claimed`` but which holds ``data``."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": data.dtype.str, "fortran_order": False,
                                               "shape": claimed})
    return out.getvalue() + data.tobytes()


def write_npz(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(f"{name}.npy", content)
    return path


def test_predictions_npz_claiming_a_huge_shape(tmp_path, salgl_main):
    small = np.zeros((4, 3), np.float32)
    path = write_npz(tmp_path / "predictions.npz", {
        "scores": npy_bytes(HUGE, small), "targets": npy_bytes((4, 3), small)})
    before = tree_snapshot(tmp_path)
    code, out, err = salgl_main("metrics", str(path))
    assert code == 2 and out == ""
    assert err.strip() == (
        f"salgl metrics: error: {path} (scores): header claims shape {HUGE} of float32 "
        "(4,800,000,000,000 bytes), but the file holds 48 bytes of data")
    assert changes(before, tree_snapshot(tmp_path)) == []


def test_npy_claiming_a_huge_shape_or_holding_objects(tmp_path):
    path = tmp_path / "vectors.npy"
    path.write_bytes(npy_bytes(HUGE, np.zeros((4, 3), np.float32)))
    with pytest.raises(SalglError, match=r"vectors.npy: header claims shape \(400000000000, 3\)"):
        load_npy(path)
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SalglError, match="holds Python objects, which are never unpickled"):
        load_npy(path)
    path.write_bytes(b"not numpy at all")
    with pytest.raises(SalglError, match="vectors.npy: not a NumPy array file"):
        load_npy(path)


def test_consistent_files_still_load(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "a.npy", array)
    assert np.array_equal(load_npy(tmp_path / "a.npy"), array)
    np.savez_compressed(tmp_path / "p.npz", scores=array / 12, targets=(array > 5).astype(np.uint8))
    from salgl.predictions import Predictions

    assert Predictions.load(tmp_path / "p.npz").scores.shape == (4, 3)
