"""NUS-WIDE (81 concepts) as a multi-label benchmark, split by the official image lists.

The ground truth is one 0/1 file per concept, aligned line by line with ImageList/Imagelist.txt,
whose Windows paths (``C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg``) end in the image's
place under Flickr/. Images are matched by their last two path components. Images with no
positive concept are dropped (counted); copies of NUS-WIDE often miss image files, which are
skipped and recorded like broken ones (``strict`` makes them an error, as for every dataset).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from salgl.data.images import Sample, check_layout, drop_unreadable, write_real_prepared
from salgl.data.prepared import check_label_names, display_path
from salgl.errors import SalglError

log = logging.getLogger("salgl")

CONCEPTS = "Concepts81.txt"
IMAGE_LIST = "ImageList/Imagelist.txt"
LABELS_DIR = "Groundtruth/AllLabels"
SPLIT_FILES = {"train": "ImageList/TrainImagelist.txt", "test": "ImageList/TestImagelist.txt"}
LAYOUT = ("Flickr/", f"{LABELS_DIR}/", CONCEPTS, IMAGE_LIST, *SPLIT_FILES.values())


def read_lines(path: Path) -> list[str]:
    """Lines without surrounding whitespace or CR; trailing blank lines removed."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as exc:
        raise SalglError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    while lines and not lines[-1]:
        lines.pop()
    return lines


def read_concepts(path: Path) -> list[str]:
    concepts = [line for line in read_lines(path) if line]
    if not concepts:
        raise SalglError(f"{path}: no concepts")
    check_label_names(concepts, str(path))
    return concepts


def image_key(line: str, path: Path, number: int) -> str:
    """``folder/file.jpg`` from a Windows or POSIX path: the image's place under Flickr/."""
    parts = [part for part in re.split(r"[\\/]", line) if part]
    if len(parts) < 2:
        raise SalglError(f"{path}:{number}: expected a path ending in folder\\file, "
                         f"found {line!r}")
    return "/".join(parts[-2:])


def read_image_list(path: Path) -> list[str]:
    """Keys of every line; a blank line would shift the alignment with the label files."""
    keys = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line:
            raise SalglError(f"{path}:{number}: blank line (the list must align line by line "
                             "with the label files)")
        keys.append(image_key(line, path, number))
    return keys


def read_label_file(path: Path, count: int, image_list: Path) -> np.ndarray:
    """One concept's 0/1 column, which must have one line per image of the image list."""
    if not path.is_file():
        raise SalglError(f"{path}: missing label file for a concept of {CONCEPTS}")
    values = read_lines(path)
    if len(values) != count:
        raise SalglError(f"{path}: {len(values)} lines, but {image_list} has {count}")
    for number, value in enumerate(values, start=1):
        if value != "0" and value != "1":
            raise SalglError(f"{path}:{number}: expected 0 or 1, found {value!r}")
    return np.fromiter((v == "1" for v in values), dtype=bool, count=count)


def read_split_keys(path: Path, known: set[str]) -> set[str]:
    """Keys listed in a split file; each must be an image of the image list."""
    keys = set()
    for number, line in enumerate(read_lines(path), start=1):
        if not line:
            continue
        key = image_key(line, path, number)
        if key not in known:
            raise SalglError(f"{path}:{number}: {key} is not in {IMAGE_LIST}")
        keys.add(key)
    return keys


def _split_of(raw: Path, known: set[str]) -> dict[str, str]:
    """{key: split}; an image listed in both splits is an error."""
    train = read_split_keys(raw / SPLIT_FILES["train"], known)
    test = read_split_keys(raw / SPLIT_FILES["test"], known)
    both = sorted(train & test)
    if both:
        raise SalglError(f"{raw / SPLIT_FILES['test']}: {both[0]} is also in "
                         f"{SPLIT_FILES['train']} ({len(both)} image(s) in both splits)")
    return {**dict.fromkeys(train, "train"), **dict.fromkeys(test, "test")}


def prepare_nuswide(raw: Path, out: Path, strict: bool = False, workers: int | None = None,
                    progress: bool = True, val_fraction: float = 0.0,
        seed: int = 0) -> dict:
    """Write NUS-WIDE in the prepared format into ``out``; returns meta.json's content."""
    raw, out = Path(raw), Path(out)
    check_layout(raw, LAYOUT, "a NUS-WIDE")
    concepts = read_concepts(raw / CONCEPTS)
    keys = read_image_list(raw / IMAGE_LIST)
    log.info("reading %d label files for %d images", len(concepts), len(keys))
    targets = np.stack([read_label_file(raw / LABELS_DIR / f"Labels_{c}.txt", len(keys),
                                        raw / IMAGE_LIST) for c in concepts], axis=1)
    split_of = _split_of(raw, set(keys))
    samples: dict[str, list[Sample]] = {"train": [], "test": []}
    dropped: list[dict] = []
    unassigned = 0
    for key, row in zip(keys, targets, strict=True):
        split = split_of.get(key)
        if split is None:
            unassigned += 1
            continue
        path = raw / "Flickr" / key
        names = [concepts[j] for j in np.flatnonzero(row)]
        if names:
            samples[split].append(Sample(path, names))
        else:
            dropped.append({"path": display_path(path), "split": split,
                            "reason": "no positive label"})
    kept, skipped = drop_unreadable(samples, strict, workers, progress)
    return write_real_prepared(out, "nuswide", raw, concepts, kept, dropped, skipped, None,
                               extra={"images_in_no_split": unassigned},
                               val_fraction=val_fraction, seed=seed)
