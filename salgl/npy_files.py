"""Reading NumPy ``.npy`` and ``.npz`` files that other runs, or other people, wrote.

``np.load`` allocates the array its header claims before reading a byte of data, so a
100-byte file claiming shape (4e11, 3) asks for terabytes. Here every array's header is
read first and its claimed size compared with the bytes actually stored (the file's size,
or a zip member's declared size); only a consistent array is loaded, never by unpickling.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from salgl.errors import SalglError


def _claimed(fh: IO[bytes], stored: int, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header at ``fh``; the data must be exactly what remains."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fh)
        else:
            shape, _, dtype = fmt.read_array_header_2_0(fh)
    except ValueError as exc:
        raise SalglError(f"{where}: not a NumPy array file ({exc})") from None
    if dtype.hasobject:
        raise SalglError(f"{where}: holds Python objects, which are never unpickled")
    claimed = math.prod(shape) * dtype.itemsize
    remaining = stored - fh.tell()
    if claimed != remaining:
        raise SalglError(f"{where}: header claims shape {shape} of {dtype} ({claimed:,} "
                         f"bytes), but the file holds {remaining:,} bytes of data")
    return shape, dtype


def load_npy(path: str | Path) -> np.ndarray:
    """One array from a ``.npy`` file whose header agrees with its size."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            _claimed(fh, path.stat().st_size, str(path))
        return np.load(path, allow_pickle=False)
    except OSError as exc:
        raise SalglError(f"{path}: cannot read ({exc.strerror or exc})") from None


def check_npz(path: str | Path) -> None:
    """Every ``.npy`` member of a ``.npz`` archive agrees with its declared size."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if not member.filename.endswith(".npy"):
                    continue
                with archive.open(member) as fh:
                    _claimed(fh, member.file_size, f"{path} ({member.filename[:-4]})")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise SalglError(f"{path}: not a readable .npz archive ({exc})") from None
