"""Reading the tables behind csv_tags and onehot: one set of CSV rules and error messages.

Rules: UTF-8 with or without a BOM, any newline style, the csv module's quoting; comma-separated,
tab-separated when the file name ends in .tsv. Blank rows (also ",,,") are skipped. Row numbers
count records from the header (row 1), blank ones included, so they equal line numbers unless a
quoted field spans lines. A row shorter than the header reads its missing trailing cells as
empty (tools drop trailing empty fields); a longer one is an error.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from salgl.data.formats.collection import ALL, NAMED_SPLITS, split_name
from salgl.data.formats.references import (
    ImageReference,
    file_problem,
    image_key,
    image_reference,
)
from salgl.data.images import Sample
from salgl.errors import SalglError, shown

IMAGE_COLUMNS = ("image", "image_name", "filename", "file_name", "file", "path")

# Parses one data row (row number, cells) into (positive labels, ignored labels).
RowParser = Callable[[int, list[str]], tuple[list[str], list[str]]]


@dataclass
class Table:
    """A table's header (names stripped) and its non-blank data rows as (row number, cells)."""

    path: Path
    columns: list[str]
    rows: list[tuple[int, list[str]]]


def delimiter_of(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def read_table(path: Path) -> Table:
    """Header and data rows of ``path``; refuses unreadable files and over-long rows."""
    path = Path(path)
    if not path.is_file():
        raise SalglError(f"{path}: table not found")
    delimiter = delimiter_of(path)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    number = 0
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            for number, record in enumerate(csv.reader(f, delimiter=delimiter), start=1):
                if not any(cell.strip() for cell in record):
                    continue
                if header is None:
                    header = [cell.strip() for cell in record]
                    continue
                if len(record) > len(header):
                    raise SalglError(
                        f"{path}:{number}: {len(record)} fields but the header has "
                        f"{len(header)} (quote a field that holds the delimiter {delimiter!r})")
                rows.append((number, record + [""] * (len(header) - len(record))))
    except UnicodeDecodeError as exc:
        raise SalglError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise SalglError(f"{path}:{number + 1}: not readable as a table ({exc})") from None
    if header is None:
        raise SalglError(f"{path}: empty table (no header row)")
    first: dict[str, int] = {}
    for i, name in enumerate(header):
        if name and name in first:
            raise SalglError(f"{path}: column {name!r} appears twice (columns {first[name] + 1} "
                             f"and {i + 1})")
        first.setdefault(name, i)
    if not rows:
        raise SalglError(f"{path}: no data rows (only the header)")
    return Table(path, header, rows)


def column_names(table: Table) -> str:
    """The header as messages list it: one line, odd names quoted with their escapes."""
    return ", ".join(c if c.isprintable() else shown(c) for c in table.columns)


def _columns_text(table: Table) -> str:
    text = column_names(table)
    if len(table.columns) == 1 and ("\t" in table.columns[0] or ";" in table.columns[0]):
        text += ("; the table is read as comma-separated, tab-separated only when its name "
                 "ends in .tsv")
    return text


def find_column(table: Table, name: str) -> int | None:
    """Index of column ``name``: exact match first, else the one case-insensitive match."""
    if name in table.columns:
        return table.columns.index(name)
    matches = [i for i, c in enumerate(table.columns) if c.lower() == name.lower()]
    if len(matches) > 1:
        raise SalglError(f"{table.path}: column name {name!r} is ambiguous (columns "
                         f"{', '.join(repr(table.columns[i]) for i in matches)})")
    return matches[0] if matches else None


def require_column(table: Table, name: str | None, defaults: Sequence[str], param: str) -> int:
    """Index of the column given by ``param`` (``name``), or of the first default present."""
    if name is not None:
        index = find_column(table, name)
        if index is None:
            raise SalglError(f"{table.path}: no column {name!r} (columns: "
                             f"{_columns_text(table)}); set {param}")
        return index
    for default in defaults:
        index = find_column(table, default)
        if index is not None:
            return index
    others = "".join(f", {d!r}" for d in defaults[1:])
    raise SalglError(f"{table.path}: no column {defaults[0]!r} (nor {others[2:]}; columns: "
                     f"{_columns_text(table)}); set {param}")


def check_folder(images: Path) -> None:
    if not Path(images).is_dir():
        raise SalglError(f"{images}: images folder not found")


def normal_extension(extension: str | None) -> str:
    """"jpg" and ".jpg" both mean ".jpg"; None or "" means none."""
    if not extension:
        return ""
    return extension if extension.startswith(".") else f".{extension}"


def image_path(table: Table, number: int, cell: str, images: Path, extension: str,
               absolute_paths: bool = False) -> ImageReference:
    """The image a cell names, below ``images`` (references.py says what may not be named);
    it must be a regular file (it is not decoded here)."""
    where = f"{table.path}:{number}"
    found = image_reference(cell, images, where, absolute_paths, extension)
    problem = file_problem(found.path)
    if problem == "not found":
        raise SalglError(f"{where}: image {found.name} not found in {images}")
    if problem:
        raise SalglError(f"{where}: image {found.name} is {problem} (a folder, pipe or "
                         "device?)")
    return found


def gather(table: Table, images: Path, image_col: int, split_col: int | None, extension: str,
           parse: RowParser, what: str, absolute_paths: bool = False
           ) -> tuple[dict[str, list[Sample]], int]:
    """Samples per split in row order, and how many repeated rows were merged.

    A row repeating an image (the same file however written: "a.jpg", "./a.jpg" or its
    absolute path) with the same ``what`` (tags, values) is merged; with other ones, or in
    another split, it is an error naming both rows.
    """
    check_folder(images)
    extension = normal_extension(extension)
    splits: dict[str, list[Sample]] = {}
    first: dict[str, tuple[int, str, tuple[frozenset[str], frozenset[str]]]] = {}
    merged = 0
    for number, cells in table.rows:
        split = ALL
        if split_col is not None:
            value = cells[split_col]
            split = split_name(value) or ""
            if not split:
                raise SalglError(f"{table.path}:{number}: split {shown(value.strip())} in "
                                 f"column {table.columns[split_col]!r} is not train, val or "
                                 "test")
        found = image_path(table, number, cells[image_col], images, extension, absolute_paths)
        labels, ignored = parse(number, cells)
        key = image_key(found.path)
        content = (frozenset(labels), frozenset(ignored))
        if key in first:
            row, first_split, first_content = first[key]
            if content != first_content:
                raise SalglError(f"{table.path}:{number}: image {found.name} listed again "
                                 f"with other {what} (first on row {row})")
            if split != first_split:
                raise SalglError(f"{table.path}:{number}: image {found.name} listed again in "
                                 f"split {split!r} (first on row {row}, in {first_split!r})")
            merged += 1
            continue
        first[key] = (number, split, content)
        splits.setdefault(split, []).append(Sample(found.path, labels, ignored))
    order = (*NAMED_SPLITS, ALL)
    return {name: splits[name] for name in order if name in splits}, merged


def merged_note(merged: int, what: str) -> list[str]:
    if not merged:
        return []
    return [f"merged {merged} repeated row(s) that list an image again with the same {what}"]
