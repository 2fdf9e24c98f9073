"""MS-COCO 2014 as a multi-label benchmark: train2014 -> train, val2014 -> test.

An image is positive for every category with at least one instance annotation in it (crowd
annotations included), as in the SALGL paper and its predecessors. Images without any
annotation carry no label and are dropped (counted in meta.json).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from salgl.data.images import Sample, check_layout, drop_unreadable, write_real_prepared
from salgl.data.prepared import check_label_names, display_path
from salgl.errors import SalglError

log = logging.getLogger("salgl")

TRAIN_JSON = "annotations/instances_train2014.json"
VAL_JSON = "annotations/instances_val2014.json"
SOURCES = {"train": (TRAIN_JSON, "train2014"), "test": (VAL_JSON, "val2014")}
LAYOUT = (TRAIN_JSON, VAL_JSON, "train2014/", "val2014/")
STANDARD_COUNTS = {"train": 82081, "test": 40137}


def load_json(path: Path) -> dict:
    """Parse a COCO annotation file; a broken download is named with its line."""
    log.info("reading %s", display_path(path))
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise SalglError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})"
                         ) from None
    except UnicodeDecodeError as exc:
        raise SalglError(f"{path}: not valid JSON (not UTF-8 text: {exc.reason})") from None
    if not isinstance(data, dict):
        raise SalglError(f"{path}: expected a JSON object with 'images', 'annotations' and "
                         "'categories'")
    return data


def _entries(data: dict, key: str, fields: tuple[str, ...], path: Path) -> list[dict]:
    """The list ``data[key]`` whose items all hold ``fields``, else an error naming the item."""
    items = data.get(key)
    if not isinstance(items, list):
        raise SalglError(f"{path}: no '{key}' list (not a COCO instances annotation file?)")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or any(f not in item for f in fields):
            raise SalglError(f"{path}: {key}[{i}] lacks one of {', '.join(fields)}")
    return items


def read_categories(data: dict, path: Path) -> list[tuple[int, str]]:
    """(id, name) pairs ordered by id: the class index order."""
    entries = _entries(data, "categories", ("id", "name"), path)
    for i, c in enumerate(entries):
        if not isinstance(c["id"], int) or not isinstance(c["name"], str):
            raise SalglError(f"{path}: categories[{i}] needs an integer id and a string name")
    categories = sorted((c["id"], c["name"]) for c in entries)
    ids = [cid for cid, _ in categories]
    if len(set(ids)) != len(ids):
        raise SalglError(f"{path}: duplicate category ids in 'categories'")
    check_label_names([name for _, name in categories], f"{path} categories")
    return categories


def split_samples(data: dict, path: Path, folder: Path, names: dict[int, str],
                  split: str) -> tuple[list[Sample], list[dict]]:
    """Labelled images in the file's order, and the images dropped for having no annotation."""
    images = _entries(data, "images", ("id", "file_name"), path)
    labels: dict[int, set[str]] = {image["id"]: set() for image in images}
    for i, ann in enumerate(_entries(data, "annotations", ("image_id", "category_id"), path)):
        if ann["category_id"] not in names:
            raise SalglError(f"{path}: annotations[{i}] has category_id {ann['category_id']}, "
                             "which is not in 'categories'")
        if ann["image_id"] not in labels:
            raise SalglError(f"{path}: annotations[{i}] has image_id {ann['image_id']}, "
                             "which is not in 'images'")
        labels[ann["image_id"]].add(names[ann["category_id"]])
    samples, dropped = [], []
    for image in images:
        image_path = folder / image["file_name"]
        if labels[image["id"]]:
            samples.append(Sample(image_path, sorted(labels[image["id"]])))
        else:
            dropped.append({"path": display_path(image_path), "split": split,
                            "reason": "no annotations"})
    return samples, dropped


def _check_same_categories(train: list[tuple[int, str]], val: list[tuple[int, str]],
                           train_path: Path, val_path: Path) -> None:
    """The class index must mean the same in both splits."""
    if train == val:
        return
    ours, theirs = dict(val), dict(train)
    cid = min(c for c in ours.keys() | theirs.keys() if ours.get(c) != theirs.get(c))
    raise SalglError(f"{val_path}: categories differ from {train_path} (id {cid}: "
                     f"{ours.get(cid)!r} here, {theirs.get(cid)!r} there)")


def prepare_mscoco(raw: Path, out: Path, strict: bool = False, workers: int | None = None,
                   progress: bool = True, val_fraction: float = 0.0,
        seed: int = 0) -> dict:
    """Write MS-COCO 2014 in the prepared format into ``out``; returns meta.json's content."""
    raw, out = Path(raw), Path(out)
    check_layout(raw, LAYOUT, "an MS-COCO 2014")
    data = {split: load_json(raw / js) for split, (js, _) in SOURCES.items()}
    categories = read_categories(data["train"], raw / TRAIN_JSON)
    _check_same_categories(categories, read_categories(data["test"], raw / VAL_JSON),
                           raw / TRAIN_JSON, raw / VAL_JSON)
    names = dict(categories)
    samples: dict[str, list[Sample]] = {}
    dropped: list[dict] = []
    for split, (js, folder) in SOURCES.items():
        samples[split], split_dropped = split_samples(data.pop(split), raw / js, raw / folder,
                                                      names, split)
        dropped += split_dropped
    kept, skipped = drop_unreadable(samples, strict, workers, progress)
    return write_real_prepared(out, "mscoco", raw, [name for _, name in categories], kept,
                               dropped, skipped, STANDARD_COUNTS,
                               val_fraction=val_fraction, seed=seed)
