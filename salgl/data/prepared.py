"""The prepared dataset format (architecture.md).

Files: labels.txt, train.tsv, val.tsv, test.tsv, optional ignore.npy, meta.json. The
validation split (val.tsv) is carved from the training data at prepare time; a dataset
prepared without one (val_fraction 0, or an older salgl) still loads, with ``val`` None.

Every reader error names the file and line; writers and readers refuse, by one rule
(``name_problem``), image names and labels that would break the two-column layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from salgl.atomic import atomic_path, write_json, write_text
from salgl.errors import SalglError, shown
from salgl.npy_files import load_npy

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """Image paths (resolved) and their 0/1 targets (images x labels, uint8); ``ignore``
    marks unscored image-label pairs (1), left out of the loss and every metric."""

    paths: list[str]
    targets: np.ndarray
    ignore: np.ndarray | None = None
    listed: list[str] | None = None  # the paths as the list file writes them (portable)

    def fingerprint(self) -> str:
        """What the split holds, independent of where the dataset lies on this machine."""
        h = hashlib.sha256("\n".join(self.listed or self.paths).encode())
        h.update(np.ascontiguousarray(self.targets).tobytes())
        if self.ignore is not None:
            h.update(np.ascontiguousarray(self.ignore).tobytes())
        return h.hexdigest()

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
    val: Split | None = None

    def split(self, name: str) -> Split:
        found = {"train": self.train, "val": self.val, "test": self.test}[name]
        if found is None:
            raise SalglError(f"{self.root / (name + '.tsv')}: missing (set "
                             "prepare.<dataset>.val_fraction above 0 and rerun prepare)")
        return found


# Characters the lists cannot hold: str.splitlines ends a line at \n, \r, \x0b, \x0c,
# \x1c-\x1e, \x85, U+2028 and U+2029; a tab splits the columns; other control and invisible
# format characters would reach terminals and logs as escapes (an ANSI colour code), and a
# lone surrogate (from a JSON "\ud800") cannot be written as UTF-8 at all.
UNLISTABLE = {"Cc": "a control character", "Cf": "an invisible format character",
              "Cs": "a lone surrogate", "Zl": "a line separator", "Zp": "a paragraph separator"}
CHARACTER_WORDS = {"\t": "a tab", "\n": "a newline", "\r": "a carriage return"}
EMPTY_LABEL = "is empty or has surrounding spaces"


def unlistable_character(text: str) -> str | None:
    """Words for the first character of ``text`` the lists cannot hold, or None."""
    if text.isprintable():  # the usual case, in C; Zs (no-break spaces) are fine but land below
        return None
    for char in text:
        kind = UNLISTABLE.get(unicodedata.category(char))
        if kind:
            return CHARACTER_WORDS.get(char) or f"U+{ord(char):04X} ({kind})"
    return None


def name_problem(name: str, label: bool) -> str | None:
    """Why ``name`` cannot stand in the prepared format, or None: the one rule that the format
    readers (at their source row), the writers and the list readers all apply. A label also
    may not hold a comma (the label separator) nor surrounding spaces (the readers strip)."""
    if not name or (label and name != name.strip()):
        return EMPTY_LABEL if label else "is empty"
    if label and "," in name:
        return "contains a comma"
    character = unlistable_character(name)
    return f"contains {character}" if character else None


def same_name_key(name: str) -> str:
    """What makes two labels the same name: equal once Unicode-normalised (NFC), so "café"
    typed with a composed é and with e + a combining accent are one label, not two that
    print identically."""
    return unicodedata.normalize("NFC", name)


def _look_alike(name: str, labels: Sequence[str]) -> str:
    """A note when a duplicate differs from its twin only in Unicode composition."""
    same = {other for other in [*labels, name] if same_name_key(other) == same_name_key(name)}
    return "; equal once Unicode-normalised" if len(same) > 1 else ""


def check_label_names(labels: Sequence[str], where: str) -> None:
    """Refuse names the list format cannot hold and duplicates, naming the culprit."""
    seen: dict[str, int] = {}
    for i, name in enumerate(labels):
        problem = name_problem(name, label=True)
        if problem == EMPTY_LABEL:
            raise SalglError(f"{where}: label {i + 1} {shown(name)} {problem}")
        if problem:
            raise SalglError(f"{where}: label {shown(name)} {problem}")
        key = same_name_key(name)
        if key in seen:
            raise SalglError(f"{where}: duplicate label {shown(name)} "
                             f"(entries {seen[key]} and {i + 1}{_look_alike(name, labels)})")
        seen[key] = i + 1


def check_list_entries(entries: Sequence[tuple[str, Sequence[str]]], where: str) -> None:
    """Refuse an image name or label a list line cannot hold, naming ``where`` and the entry
    (a backstop: the format readers refuse these at their source row already)."""
    for number, (image, names) in enumerate(entries, start=1):
        problem = name_problem(image, label=False)
        if problem:
            raise SalglError(f"{where}: entry {number}: image {shown(image)} {problem}")
        for name in names:
            problem = name_problem(name, label=True)
            if problem:
                raise SalglError(f"{where}: entry {number}: label {shown(name)} {problem}")


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
    entries = list(entries)
    check_list_entries(entries, str(path))
    write_text(path, "".join(f"{p}\t{','.join(names)}\n" for p, names in entries))


def listed_path(path: str | Path, root: Path) -> str:
    """How the lists and meta.json name an image: relative to ``root`` when it lies inside
    it as written (a link in the image folder keeps its own name, not its target's), else as
    ``display_path`` shows it (relative once links are resolved, else absolute)."""
    absolute, base = os.path.abspath(path), os.path.abspath(root)
    relative = os.path.relpath(absolute, base)
    if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
        return Path(relative).as_posix()
    return display_path(absolute, Path(base))


def ignore_file(split: str) -> str:
    """ignore.npy holds the test split's unscored pairs (as VOC's difficult objects have
    always had); other splits' live in ignore_<split>.npy."""
    return "ignore.npy" if split == "test" else f"ignore_{split}.npy"


def write_prepared(out: Path, labels: Sequence[str],
                   splits: dict[str, list[tuple[str, Sequence[str]]]],
                   meta: dict, ignores: dict[str, np.ndarray] | None = None) -> None:
    """Write the text/array files of a prepared dataset into an existing folder ``out``."""
    write_labels(out / "labels.txt", labels)
    for name in SPLITS:
        if name in splits:
            write_list(out / f"{name}.tsv", splits[name])
    for name, matrix in (ignores or {}).items():
        with atomic_path(out / ignore_file(name)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, matrix.astype(np.uint8))
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
        key = same_name_key(name)
        if key in seen:
            raise SalglError(f"{path}:{number}: duplicate label {shown(name)} "
                             f"(first on line {seen[key]}{_look_alike(name, labels)})")
        problem = name_problem(name, label=True)
        if problem:
            raise SalglError(f"{path}:{number}: label {shown(name)} {problem}")
        seen[key] = number
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
    listed: list[str] = []
    rows: list[list[int]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise SalglError(f"{path}:{number}: expected 'image<TAB>label,label,...', found no tab")
        image, names = line.split("\t", 1)
        problem = name_problem(image, label=False)
        if problem:
            raise SalglError(f"{path}:{number}: image path {shown(image)} {problem}")
        row = []
        for name in filter(None, (n.strip() for n in names.split(","))):
            if name not in index:
                raise SalglError(f"{path}:{number}: unknown label {name!r} (not in labels.txt)")
            row.append(index[name])
        paths.append(image if os.path.isabs(image) else str(base / image))
        listed.append(image)
        rows.append(row)
    targets = np.zeros((len(paths), len(labels)), dtype=np.uint8)
    for i, row in enumerate(rows):
        targets[i, row] = 1
    return Split(paths=paths, targets=targets, listed=listed)


def image_root_record(root: Path, prepared: Path) -> dict:
    """How meta.json records the folder the lists' image paths are relative to: inside the
    prepared folder (travels with it), else relative to the workspace, else absolute."""
    try:
        return {"path": root.resolve().relative_to(prepared.resolve()).as_posix() or ".",
                "relative_to": "prepared"}
    except ValueError:
        shown = display_path(root)
        return {"path": shown, "relative_to": "absolute" if os.path.isabs(shown)
                else "workspace"}


def resolve_image_root(root: Path, meta: dict, override: str | Path | None,
                       check: bool) -> Path | None:
    """The image root of a prepared dataset (None: lists of an older salgl, relative to the
    working directory); ``check`` refuses a root that is not there, naming what to set."""
    record = meta.get("image_root")
    if override is not None:
        folder = Path(override)
    elif record is None:
        return None
    elif record.get("relative_to") == "prepared":
        folder = root / record["path"]
    else:
        folder = Path(record["path"])
    if check and not folder.is_dir():
        name = meta.get("dataset", root.name)
        source = "image_roots" if override is not None else f"{root / 'meta.json'}"
        raise SalglError(f"{folder}: image folder not found (from {source}); the prepared "
                         f"lists name images relative to it: put the images there, or set "
                         f"image_roots.{name} in params.yaml to where they are")
    return folder


def load_prepared(root: str | Path, base: Path | None = None,
                  image_root: str | Path | None = None, images: bool = True
                  ) -> PreparedDataset:
    """Read and validate a prepared dataset folder; ``image_root`` overrides where its images
    are, and ``images=False`` skips checking that they are there (labels only)."""
    root = Path(root)
    if not root.is_dir():
        raise SalglError(f"{root}: prepared dataset folder not found (run the prepare stage first)")
    meta_path = root / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    base = resolve_image_root(root, meta, image_root, images) or base
    labels = read_labels(root / "labels.txt")
    train = read_list(root / "train.tsv", labels, base)
    test = read_list(root / "test.tsv", labels, base)
    val = read_list(root / "val.tsv", labels, base) if (root / "val.tsv").is_file() else None
    for name, split in (("train", train), ("val", val), ("test", test)):
        path = root / ignore_file(name)
        if split is None or not path.exists():
            continue
        split.ignore = load_npy(path)
        if split.ignore.shape != split.targets.shape:
            raise SalglError(f"{path}: shape {split.ignore.shape} does not match {name} "
                             f"images x labels {split.targets.shape}")
    ignore = test.ignore
    return PreparedDataset(root=root, labels=labels, train=train, test=test, ignore=ignore,
                           meta=meta, val=val)


