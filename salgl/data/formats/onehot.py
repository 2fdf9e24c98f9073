"""A table with one column per label, as in CheXpert: 1 present, 0 absent, -1 uncertain.

An empty cell means "not annotated". ``uncertain`` and ``missing`` choose what those cells
become: a positive, a negative, or an ignored (unscored) pair in ``Sample.ignored``. Which
columns are labels: every column but the image and split columns, those named in
``non_label_columns``, columns without a header name, and columns holding some text cell
(e.g. "Male"); the text ones are named in the notes. A numeric column that is not a label (an
age) must be named in ``non_label_columns``, else its values are errors.
"""

from __future__ import annotations

import math
from pathlib import Path

from salgl.data.formats.collection import Collection, check_collection
from salgl.data.formats.table import (
    IMAGE_COLUMNS,
    Table,
    find_column,
    gather,
    merged_note,
    read_table,
    require_column,
)
from salgl.data.prepared import check_label_names
from salgl.errors import SalglError

UNCERTAIN = ("positive", "negative", "ignore")
MISSING = ("ignore", "negative")


def cell_number(cell: str) -> float | None:
    """The number a cell holds ("1", "1.0", " -1 "), NaN for empty or "nan" cells, None for
    text. pandas writes NaN as empty or "nan"; both mean not annotated."""
    text = cell.strip()
    if not text:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _label_columns(data: Table, skip: set[int]) -> tuple[list[int], list[str]]:
    """Indices of the label columns, in order, and notes on the columns that are not."""
    columns, notes = [], []
    for i, name in enumerate(data.columns):
        if i in skip:
            continue
        if not name:
            notes.append(f"column {i + 1} has no name: not a label")
            continue
        text = next(((number, cells[i]) for number, cells in data.rows
                     if cell_number(cells[i]) is None), None)
        if text:
            notes.append(f"column {name!r} is not a label: it holds text ({text[1].strip()!r} "
                         f"on row {text[0]})")
            continue
        columns.append(i)
    return columns, notes


def read_onehot(table: Path, images: Path, image_column: str | None = None,
                non_label_columns: list[str] | None = None, uncertain: str = "ignore",
                missing: str = "ignore", extension: str | None = None,
                split_column: str | None = None) -> Collection:
    """Read a one-hot table; image names are relative to ``images``. Labels in column order."""
    if uncertain not in UNCERTAIN:
        raise SalglError(f"uncertain must be one of {', '.join(UNCERTAIN)}, not {uncertain!r}")
    if missing not in MISSING:
        raise SalglError(f"missing must be one of {', '.join(MISSING)}, not {missing!r}")
    data = read_table(Path(table))
    image_col = require_column(data, image_column, IMAGE_COLUMNS, "image_column")
    split_col = (require_column(data, split_column, (), "split_column")
                 if split_column is not None else None)
    skip = {image_col} | ({split_col} if split_col is not None else set())
    for name in non_label_columns or []:
        index = find_column(data, name)
        if index is None:
            raise SalglError(f"{data.path}: non_label_columns names {name!r}, which is not a "
                             f"column (columns: {', '.join(data.columns)})")
        skip.add(index)
    columns, notes = _label_columns(data, skip)
    if not columns:
        raise SalglError(f"{data.path}: no label columns (columns: {', '.join(data.columns)})")
    labels = [data.columns[i] for i in columns]
    check_label_names(labels, f"{data.path} header")
    counts = {"uncertain": 0, "missing": 0}

    def parse(number: int, cells: list[str]) -> tuple[list[str], list[str]]:
        present, ignored = [], []
        for i, name in zip(columns, labels, strict=True):
            value = cell_number(cells[i])
            if value is not None and math.isnan(value):
                counts["missing"] += 1
                policy = missing
            elif value == -1:
                counts["uncertain"] += 1
                policy = uncertain
            elif value == 1:
                policy = "positive"
            elif value == 0:
                continue
            else:
                raise SalglError(f"{data.path}:{number}: column {name!r} holds "
                                 f"{cells[i].strip()!r}, not 1, 0, -1 or empty (name it in "
                                 "non_label_columns if it is not a label)")
            if policy == "positive":
                present.append(name)
            elif policy == "ignore":
                ignored.append(name)
        return present, ignored

    splits, merged = gather(data, Path(images), image_col, split_col, extension or "", parse,
                            "values")
    notes += merged_note(merged, "values")
    if counts["uncertain"]:
        notes.append(f"read {counts['uncertain']} uncertain (-1) cell(s) as {uncertain}")
    if counts["missing"]:
        notes.append(f"read {counts['missing']} empty cell(s) as {missing}")
    used = {name for samples in splits.values() for s in samples for name in s.labels}
    notes += [f"label {name!r} is present in no image" for name in labels if name not in used]
    collection = Collection(labels, splits, [], notes)
    check_collection(collection, str(data.path))
    return collection
