"""A table with one column per label, as in CheXpert: 1 present, 0 absent, -1 uncertain.

An empty cell means "not annotated". ``uncertain`` and ``missing`` choose what those cells
become: a positive, a negative, or an ignored (unscored) pair in ``Sample.ignored``. Which
columns are labels: every column but the image and split columns, those named in
``non_label_columns``, columns without a header name, and columns whose filled cells are all
text (e.g. "Male"); the text ones are named in the notes. A column mixing numbers and text (a
stray "yes" among 0/1) is an error naming the cell, never silently left out. A numeric column
that is not a label (an age) must be named in ``non_label_columns``, else its values are errors.
"""

from __future__ import annotations

import math
from pathlib import Path

from salgl.data.formats.collection import Collection, check_collection
from salgl.data.formats.table import (
    IMAGE_COLUMNS,
    Table,
    column_names,
    find_column,
    gather,
    merged_note,
    read_table,
    require_column,
)
from salgl.data.prepared import check_label_names
from salgl.errors import SalglError, shown

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


def _text_cells(data: Table, column: int) -> tuple[tuple[int, str] | None, bool]:
    """The column's first cell holding text (row number, cell), and whether any cell holds
    a number."""
    text, numeric = None, False
    for number, cells in data.rows:
        value = cell_number(cells[column])
        if value is None:
            text = text or (number, cells[column])
        elif not math.isnan(value):
            numeric = True
    return text, numeric


def not_a_label_value(data: Table, number: int, name: str, cell: str) -> SalglError:
    """One wording for a label column's bad cell, whether found by value or by being text."""
    return SalglError(f"{data.path}:{number}: column {shown(name)} holds {shown(cell.strip())}, "
                      "not 1, 0, -1 or empty (name it in non_label_columns if it is not a "
                      "label)")


def _label_columns(data: Table, skip: set[int]) -> tuple[list[int], list[str]]:
    """Indices of the label columns, in order, and notes on the columns that are not.

    A column whose filled cells are all text (a sex, a view) is not a label; one mixing
    numbers and text is a label column with a bad cell (a stray "yes"), named as an error.
    """
    columns, notes = [], []
    for i, name in enumerate(data.columns):
        if i in skip:
            continue
        if not name:
            notes.append(f"column {i + 1} has no name: not a label")
            continue
        text, numeric = _text_cells(data, i)
        if text and numeric:
            raise not_a_label_value(data, text[0], name, text[1])
        if text:
            notes.append(f"column {shown(name)} is not a label: it holds text "
                         f"({shown(text[1].strip())} on row {text[0]})")
            continue
        columns.append(i)
    return columns, notes


def _skipped_columns(data: Table, non_label_columns: list[str] | None) -> set[int]:
    """Indices of the columns ``non_label_columns`` names (column names, as text)."""
    skip = set()
    for name in non_label_columns or []:
        if not isinstance(name, str):
            raise SalglError(f"{data.path}: non_label_columns holds {shown(name)} "
                             f"({type(name).__name__}), not a column name")
        index = find_column(data, name)
        if index is None:
            raise SalglError(f"{data.path}: non_label_columns names {shown(name)}, which is "
                             f"not a column (columns: {column_names(data)})")
        skip.add(index)
    return skip


def read_onehot(table: Path, images: Path, image_column: str | None = None,
                non_label_columns: list[str] | None = None, uncertain: str = "ignore",
                missing: str = "ignore", extension: str | None = None,
                split_column: str | None = None, absolute_paths: bool = False) -> Collection:
    """Read a one-hot table; image names are relative to ``images`` (absolute ones only with
    ``absolute_paths``). Labels in column order."""
    if uncertain not in UNCERTAIN:
        raise SalglError(f"uncertain must be one of {', '.join(UNCERTAIN)}, not {uncertain!r}")
    if missing not in MISSING:
        raise SalglError(f"missing must be one of {', '.join(MISSING)}, not {missing!r}")
    data = read_table(Path(table))
    image_col = require_column(data, image_column, IMAGE_COLUMNS, "image_column")
    split_col = (require_column(data, split_column, (), "split_column")
                 if split_column is not None else None)
    skip = {image_col} | ({split_col} if split_col is not None else set())
    skip |= _skipped_columns(data, non_label_columns)
    columns, notes = _label_columns(data, skip)
    if not columns:
        raise SalglError(f"{data.path}: no label columns (columns: {column_names(data)})")
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
                raise not_a_label_value(data, number, name, cells[i])
            if policy == "positive":
                present.append(name)
            elif policy == "ignore":
                ignored.append(name)
        return present, ignored

    splits, merged = gather(data, Path(images), image_col, split_col, extension or "", parse,
                            "values", absolute_paths)
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
