"""A table of images and their tags, one row per image: ``image,tags`` with "cat dog" cells.

The simplest export of many labelling tools and the usual hand-made format. Labels are every tag
that occurs, sorted by name (Python's code-point order: stable across runs and platforms,
upper case before lower case). A row with no tags is an image with no label present (kept).
"""

from __future__ import annotations

import logging
from collections import Counter
from itertools import pairwise
from pathlib import Path

from salgl.data.formats.collection import Collection, check_collection
from salgl.data.formats.table import (
    IMAGE_COLUMNS,
    gather,
    merged_note,
    read_table,
    require_column,
)
from salgl.data.prepared import check_label_names
from salgl.errors import SalglError

TAG_COLUMNS = ("tags", "labels", "label", "categories")

log = logging.getLogger("salgl")


def split_tags(cell: str, separator: str) -> list[str]:
    """Tags of a cell in first-seen order: stripped, empty ones and repeats dropped."""
    return list(dict.fromkeys(t.strip() for t in cell.split(separator) if t.strip()))


def split_names(rows: list[list[str]], shown: int = 3) -> list[tuple[str, str, int]]:
    """Pairs of tags that occur only next to each other, in one order, in two rows or more:
    most likely one name ("ankle boot") cut in two by the separator. (first, second, rows)."""
    alone: Counter = Counter(tag for tags in rows for tag in tags)
    adjacent: Counter = Counter(pair for tags in rows for pair in pairwise(tags))
    found = [(a, b, n) for (a, b), n in adjacent.items()
             if n >= 2 and alone[a] == n and alone[b] == n]
    return sorted(found, key=lambda item: (-item[2], item[0]))[:shown]


def _case_notes(labels: list[str]) -> list[str]:
    """Tags that differ only in case are separate labels; say so, it is rarely meant."""
    groups: dict[str, list[str]] = {}
    for name in labels:
        groups.setdefault(name.casefold(), []).append(name)
    return [f"labels {', '.join(repr(n) for n in group)} differ only in case (kept apart)"
            for group in groups.values() if len(group) > 1]


def read_csv_tags(table: Path, images: Path, image_column: str | None = None,
                  tags_column: str | None = None, tag_separator: str = " ",
                  extension: str | None = None, split_column: str | None = None,
                  absolute_paths: bool = False) -> Collection:
    """Read a tag table; image names are relative to ``images`` (absolute ones only with
    ``absolute_paths``), ``extension`` is appended to names without one. Splits come from
    ``split_column`` (train/val/test) or are "all"."""
    if not tag_separator:
        raise SalglError("tag_separator must not be empty")
    data = read_table(Path(table))
    image_col = require_column(data, image_column, IMAGE_COLUMNS, "image_column")
    tags_col = require_column(data, tags_column, TAG_COLUMNS, "tags_column")
    split_col = (require_column(data, split_column, (), "split_column")
                 if split_column is not None else None)

    cells_seen: list[list[str]] = []

    def parse(number: int, cells: list[str]) -> tuple[list[str], list[str]]:
        tags = split_tags(cells[tags_col], tag_separator)
        check_label_names(tags, f"{data.path}:{number}")
        cells_seen.append(list(tags))  # as written: the samples get sorted in place later
        return tags, []

    splits, merged = gather(data, Path(images), image_col, split_col, extension or "", parse,
                            "tags", absolute_paths)
    labels = sorted({tag for samples in splits.values() for s in samples for tag in s.labels})
    if not labels:
        raise SalglError(f"{data.path}: no tags in column {data.columns[tags_col]!r} (split "
                         f"with {tag_separator!r}; set tag_separator?)")
    index = {name: i for i, name in enumerate(labels)}
    untagged = 0
    for samples in splits.values():
        for sample in samples:
            sample.labels.sort(key=index.__getitem__)
            untagged += not sample.labels
    for first, second, rows in split_names(cells_seen):
        log.warning("%s: tags %r and %r always appear together, in this order (%d rows): one "
                    "label %r split at tag_separator %r? Set tag_separator to what separates "
                    "labels (',', '|', ';')", data.path, first, second, rows, f"{first} {second}",
                    tag_separator)
    notes = merged_note(merged, "tags") + _case_notes(labels)
    if untagged:
        notes.append(f"kept {untagged} image(s) without tags as all-negative")
    collection = Collection(labels, splits, [], notes)
    check_collection(collection, str(data.path))
    return collection
