"""The prepared dataset format (architecture.md).

Files: labels.txt, train.tsv, test.tsv, optional ignore.npy, meta.json.

Every reader error names the file and line; every writer refuses label names that would
break the two-column layout.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from salgl.atomic import atomic_path, write_json, write_text
from salgl.errors import SalglError

SPLITS = ("train", "test")


@dataclass
class Split:
    """Image paths (resolved) and their 0/1 targets (images x labels, uint8)."""

    paths: list[str]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class PreparedDataset:
    root: Path
    labels: list[str]
    train: Split
    test: Split
    ignore: np.ndarray | None
    meta: dict

    def split(self, name: str) -> Split:
        return {"train": self.train, "test": self.test}[name]


def check_label_names(labels: Sequence[str], where: str) -> None:
    """Refuse names the list format cannot hold and duplicates, naming the culprit."""
    seen: dict[str, int] = {}
    for i, name in enumerate(labels):
        if not name or name != name.strip():
            raise SalglError(f"{where}: label {i + 1} {name!r} is empty or has surrounding "
                             "spaces")
        for bad, word in (("\t", "a tab"), (",", "a comma"), ("\n", "a newline"), ("\r", "a CR")):
            if bad in name:
                raise SalglError(f"{where}: label {name!r} contains {word}")
        if name in seen:
            raise SalglError(f"{where}: duplicate label {name!r} "
                             f"(entries {seen[name]} and {i + 1})")
        seen[name] = i + 1


def display_path(path: str | Path, base: Path | None = None) -> str:
    """Path relative to ``base`` (default: cwd) when inside it, else absolute."""
    base = (base or Path.cwd()).resolve()
    path = Path(path).resolve()
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def write_labels(path: Path, labels: Sequence[str]) -> None:
    check_label_names(labels, str(path))
    write_text(path, "".join(f"{name}\n" for name in labels))


def write_list(path: Path, entries: Iterable[tuple[str, Sequence[str]]]) -> None:
    write_text(path, "".join(f"{p}\t{','.join(names)}\n" for p, names in entries))


def write_prepared(out: Path, labels: Sequence[str],
                   splits: dict[str, list[tuple[str, Sequence[str]]]],
                   meta: dict, ignore: np.ndarray | None = None) -> None:
    """Write the text/array files of a prepared dataset into an existing folder ``out``."""
    write_labels(out / "labels.txt", labels)
    for name in SPLITS:
        write_list(out / f"{name}.tsv", splits[name])
    if ignore is not None:
        with atomic_path(out / "ignore.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, ignore.astype(np.uint8))
    write_json(out / "meta.json", meta)


def read_labels(path: Path) -> list[str]:
    if not path.is_file():
        raise SalglError(f"{path}: missing (a prepared dataset needs labels.txt)")
    labels: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name in seen:
            raise SalglError(f"{path}:{number}: duplicate label {name!r} "
                             f"(first on line {seen[name]})")
        if "\t" in name or "," in name:
            raise SalglError(f"{path}:{number}: label {name!r} contains a tab or comma")
        seen[name] = number
        labels.append(name)
    if not labels:
        raise SalglError(f"{path}: no labels")
    return labels


def read_list(path: Path, labels: Sequence[str], base: Path | None = None) -> Split:
    """Parse ``image<TAB>label,label`` lines; relative image paths are resolved against ``base``."""
    if not path.is_file():
        raise SalglError(f"{path}: missing (a prepared dataset needs {path.name})")
    index = {name: i for i, name in enumerate(labels)}
    base = base or Path.cwd()
    paths: list[str] = []
    rows: list[list[int]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise SalglError(f"{path}:{number}: expected 'image<TAB>label,label,...', found no tab")
        image, names = line.split("\t", 1)
        if not image:
            raise SalglError(f"{path}:{number}: empty image path")
        row = []
        for name in filter(None, (n.strip() for n in names.split(","))):
            if name not in index:
                raise SalglError(f"{path}:{number}: unknown label {name!r} (not in labels.txt)")
            row.append(index[name])
        paths.append(image if os.path.isabs(image) else str(base / image))
        rows.append(row)
    targets = np.zeros((len(paths), len(labels)), dtype=np.uint8)
    for i, row in enumerate(rows):
        targets[i, row] = 1
    return Split(paths=paths, targets=targets)


def load_prepared(root: str | Path, base: Path | None = None) -> PreparedDataset:
    """Read and validate a prepared dataset folder."""
    root = Path(root)
    if not root.is_dir():
        raise SalglError(f"{root}: prepared dataset folder not found (run the prepare stage first)")
    labels = read_labels(root / "labels.txt")
    train = read_list(root / "train.tsv", labels, base)
    test = read_list(root / "test.tsv", labels, base)
    ignore = None
    if (root / "ignore.npy").exists():
        ignore = np.load(root / "ignore.npy", allow_pickle=False)
        if ignore.shape != test.targets.shape:
            raise SalglError(f"{root / 'ignore.npy'}: shape {ignore.shape} does not match "
                             f"test images x labels {test.targets.shape}")
    meta_path = root / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    return PreparedDataset(root=root, labels=labels, train=train, test=test, ignore=ignore,
                           meta=meta)
