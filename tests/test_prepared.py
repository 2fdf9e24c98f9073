"""The prepared list format: errors name the file and the line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from salgl.data.prepared import check_label_names, load_prepared, write_prepared
from salgl.errors import SalglError


def write(root: Path, labels: str, train: str, test: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_text(labels, encoding="utf-8")
    (root / "train.tsv").write_text(train, encoding="utf-8")
    (root / "test.tsv").write_text(test, encoding="utf-8")
    return root


def test_round_trip_and_relative_paths(tmp_path: Path) -> None:
    out = tmp_path / "p"
    out.mkdir()
    write_prepared(out, ["cat", "traffic light"],
                   {"train": [("a.jpg", ["cat"]), ("b.jpg", ["cat", "traffic light"])],
                    "test": [("c.jpg", [])]}, {"source": "test"},
                   ignores={"test": np.array([[0, 1]], dtype=np.uint8)})
    data = load_prepared(out, base=tmp_path)
    assert data.labels == ["cat", "traffic light"]
    assert data.train.paths == [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]
    assert data.train.targets.tolist() == [[1, 0], [1, 1]]
    assert data.test.targets.tolist() == [[0, 0]]
    assert data.ignore.tolist() == [[0, 1]]


def test_duplicate_label_names_file_and_line(tmp_path: Path) -> None:
    root = write(tmp_path / "p", "cat\ndog\ncat\n", "")
    with pytest.raises(SalglError, match=r"labels.txt:3: duplicate label 'cat' \(first on line 1"):
        load_prepared(root)


def test_line_without_tab(tmp_path: Path) -> None:
    root = write(tmp_path / "p", "cat\n", "a.jpg\tcat\nb.jpg cat\n")
    with pytest.raises(SalglError, match=r"train.tsv:2: expected 'image<TAB>label"):
        load_prepared(root)


def test_unknown_label(tmp_path: Path) -> None:
    root = write(tmp_path / "p", "cat\n", "a.jpg\tcat\n", "b.jpg\tcat,zebra\n")
    with pytest.raises(SalglError, match=r"test.tsv:1: unknown label 'zebra'"):
        load_prepared(root)


def test_ignore_shape_checked(tmp_path: Path) -> None:
    root = write(tmp_path / "p", "cat\ndog\n", "a.jpg\tcat\n", "b.jpg\tdog\n")
    np.save(root / "ignore.npy", np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(SalglError, match=r"ignore.npy: shape \(2, 2\) does not match"):
        load_prepared(root)


@pytest.mark.parametrize("labels,fragment", [
    (["a", "b", "a"], "duplicate label 'a'"),
    (["a,b"], "contains a comma"),
    (["a\tb"], "contains a tab"),
    ([" a"], "surrounding spaces"),
])
def test_writer_refuses_bad_names(labels: list[str], fragment: str) -> None:
    with pytest.raises(SalglError, match=fragment):
        check_label_names(labels, "labels")
