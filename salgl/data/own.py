"""Prepare a user's own image collection (COCO export, tag table or one-hot table).

The format readers (salgl/data/formats) turn the annotation files into labels and samples;
this module makes the splits (the user's own where given, else iterative stratification),
checks every image in parallel, refuses labels the training split cannot teach, and writes
the prepared format with the same code as the benchmarks.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from salgl.config import OwnDatasetConfig
from salgl.data.formats.collection import Collection, split_name
from salgl.data.images import Sample, drop_unreadable, label_counts, write_real_prepared
from salgl.data.prepared import listed_path
from salgl.data.split import stratified_split, three_way_split
from salgl.errors import SalglError

log = logging.getLogger("salgl")


def _paths(value: str | dict, where: str) -> Path | dict[str, Path]:
    if isinstance(value, str):
        return Path(value)
    named = {}
    for key, path in value.items():
        split = split_name(str(key))
        if split is None or not isinstance(path, str):
            raise SalglError(f"{where}.{key}: expected a split name (train, val, test) and a "
                             "path")
        named[split] = Path(path)
    return named


def read_collection(name: str, cfg: OwnDatasetConfig) -> Collection:
    """The user's annotations, read by the reader of ``cfg.format``."""
    from salgl.data.formats.coco_export import read_coco
    from salgl.data.formats.csv_tags import read_csv_tags
    from salgl.data.formats.onehot import read_onehot

    where = f"prepare.{name}"
    annotations = _paths(cfg.annotations, f"{where}.annotations")
    images = _paths(cfg.images, f"{where}.images")
    if cfg.format == "coco":
        return read_coco(annotations, images, cfg.keep_unannotated, cfg.absolute_paths)
    if isinstance(images, dict):
        raise SalglError(f"{where}.images: one folder for format {cfg.format}")
    if cfg.format == "csv":
        return read_csv_tags(annotations, images, cfg.image_column, cfg.tags_column,
                             cfg.tag_separator, cfg.extension, cfg.split_column,
                             cfg.absolute_paths)
    return read_onehot(annotations, images, cfg.image_column, cfg.non_label_columns,
                       cfg.uncertain, cfg.missing, cfg.extension, cfg.split_column,
                       cfg.absolute_paths)


def _targets(samples: list[Sample], index: dict[str, int]) -> np.ndarray:
    targets = np.zeros((len(samples), len(index)), dtype=np.uint8)
    for row, sample in enumerate(samples):
        targets[row, [index[n] for n in sample.labels]] = 1
    return targets


def make_splits(collection: Collection, cfg: OwnDatasetConfig, where: str
                ) -> dict[str, list[Sample]]:
    """The user's splits, completed: no splits at all -> train/val/test by stratification;
    no test split -> carved from train (test_fraction); val is carved later if missing."""
    index = {label: i for i, label in enumerate(collection.labels)}
    splits = dict(collection.splits)
    if "test" not in splits and cfg.test_fraction <= 0:
        raise SalglError(f"{where}.test_fraction: the data has no test split, so it must be "
                         "above 0")
    if "all" in splits:
        pool = splits.pop("all")
        parts = three_way_split(_targets(pool, index), cfg.val_fraction, cfg.test_fraction,
                                cfg.seed, where)
        return {name: [pool[i] for i in rows] for name, rows in parts.items() if len(rows)}
    if "train" not in splits:
        raise SalglError(f"{where}: the annotations name no training split (found: "
                         f"{', '.join(splits)})")
    if "test" not in splits:
        train = splits["train"]
        kept, carved = stratified_split(_targets(train, index), cfg.test_fraction, cfg.seed,
                                        f"{where}.test_fraction")
        splits["train"], splits["test"] = [train[i] for i in kept], [train[i] for i in carved]
    return splits


def check_training_labels(labels: list[str], train: list[Sample], min_positives: int,
                          where: str) -> None:
    """Labels with no training positive cannot be learnt: an error naming them; few: a
    warning naming them."""
    counts = label_counts(train, labels)
    none = [label for label, n in counts.items() if n == 0]
    if none:
        raise SalglError(f"{where}: {len(none)} label(s) have no positive in the training "
                         f"split: {', '.join(none[:10])}{' ...' if len(none) > 10 else ''} "
                         "(add images, or remove the label from the annotations)")
    few = [f"{label} ({n})" for label, n in counts.items() if n < min_positives]
    if few:
        log.warning("%s: %d label(s) have fewer than %d training positives: %s", where,
                    len(few), min_positives, ", ".join(few[:10]))


def image_root(cfg: OwnDatasetConfig) -> Path:
    """The folder the prepared lists' image paths are relative to (the folders as written,
    links not resolved, as the lists name the images: prepared.listed_path)."""
    if isinstance(cfg.images, str):
        return Path(cfg.images)
    return Path(os.path.commonpath([os.path.abspath(p) for p in cfg.images.values()]))


def prepare_own(name: str, cfg: OwnDatasetConfig, out: Path, progress: bool = True,
                workers: int | None = None) -> dict:
    """Read, split, check and write a user's dataset into ``out``; returns its meta."""
    where = f"prepare.{name}"
    collection = read_collection(name, cfg)
    listed = ", ".join(collection.labels[:30])
    more = f" and {len(collection.labels) - 30} more" if len(collection.labels) > 30 else ""
    log.info("%s: %d labels: %s%s", name, len(collection.labels), listed, more)
    splits = make_splits(collection, cfg, where)
    root = image_root(cfg)
    kept, skipped = drop_unreadable(splits, cfg.strict, workers, progress, root)
    check_training_labels(collection.labels, kept["train"], cfg.min_positives, where)
    # an image dropped from a named split counts there; from unsplit data, under train; its
    # path recorded as the lists would name it (inside the image folder)
    dropped = [{"split": "train", **item, "path": listed_path(item["path"], root)}
               for item in collection.dropped]
    extra = {"format": cfg.format, "notes": collection.notes}
    source = Path(cfg.annotations if isinstance(cfg.annotations, str)
                  else os.path.commonpath(list(cfg.annotations.values())))
    meta = write_real_prepared(out, name, source, collection.labels, kept, dropped,
                               skipped, None, with_ignore=True, extra=extra,
                               val_fraction=cfg.val_fraction, seed=cfg.seed,
                               ignore_splits=("train", "val", "test"),
                               image_root=root)
    for note in collection.notes:
        log.info("%s: %s", name, note)
    return meta
