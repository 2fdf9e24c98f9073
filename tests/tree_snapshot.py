"""A folder tree's state, to assert that a refused command changed nothing on disk.

Every entry under the root (hidden ones and links included, links not followed) with its
kind, mode, size, content hash (regular files) or target (links). Two snapshots compare
equal exactly when nothing was created, removed, replaced or rewritten.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def _entry(path: Path) -> tuple:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return ("file", stat.S_IMODE(st.st_mode), st.st_size, digest, st.st_ino)
    if stat.S_ISDIR(st.st_mode):
        return ("dir", stat.S_IMODE(st.st_mode))
    return ("special", stat.S_IFMT(st.st_mode), st.st_ino)


def tree_snapshot(root: str | Path) -> dict[str, tuple]:
    """{relative path: state} for the root and everything below it."""
    root = Path(root)
    found = {".": _entry(root)}
    for top, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(top) / name
            found[str(path.relative_to(root))] = _entry(path)
    return found


def changes(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    """What differs, one line per path (empty when nothing changed)."""
    lines = [f"removed {p}" for p in sorted(set(before) - set(after))]
    lines += [f"added {p}" for p in sorted(set(after) - set(before))]
    lines += [f"changed {p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    return lines
