"""Write outputs under a temporary name and rename, so a failure never leaves half a file.

Every output gets, just before its rename, the permissions an ordinary new file or folder
would get under the process umask: ``mkstemp`` alone makes files 0600 and folders 0700, and
some libraries (safetensors) replace the file they are given with one of their own, also
0600, which colleagues on a shared server could not read. This is the one place that
decides an output's mode. A write that fails for a reason of the file system (disk full,
permission denied, read-only folder) becomes one SalglError naming the path; the earlier
output stays as it was. Which paths may be written at all: salgl.output_rules, whose checks
atomic_path and atomic_dir apply before they create anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from salgl.errors import SalglError
from salgl.output_rules import (
    MARKER,
    WRITE_ERRNOS,
    check_dir_output,
    check_file_output,
    marker_text,
    write_error,
)


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _refusal(exc: BaseException) -> OSError | None:
    """The file system's refusal behind ``exc``, also when a library wrapped it in its own
    exception type (safetensors reports "... (os error 28)")."""
    if isinstance(exc, OSError):
        return exc if exc.errno in WRITE_ERRNOS else None
    found = re.search(r"\(os error (\d+)\)", str(exc))
    if found and int(found.group(1)) in WRITE_ERRNOS:
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    return None


@contextlib.contextmanager
def refused_writes(path: str | Path) -> Iterator[None]:
    """Turn a file-system refusal inside the block into write_error(path)."""
    try:
        yield
    except SalglError:
        raise
    except Exception as exc:
        refusal = _refusal(exc)
        if refusal is None:
            raise
        raise write_error(path, refusal) from None


def _make_parent(path: Path) -> None:
    with refused_writes(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)


def give_umask_mode(path: Path) -> None:
    """The mode a plain ``open()`` or ``mkdir()`` would have given ``path`` (and, for a
    folder, everything in it): 0666 or 0777 less the umask."""
    umask = current_umask()
    if path.is_dir() and not path.is_symlink():
        for top, _, files in os.walk(path):
            os.chmod(top, 0o777 & ~umask)
            for name in files:
                file = os.path.join(top, name)
                if not os.path.islink(file):
                    os.chmod(file, 0o666 & ~umask)
    elif path.is_file() and not path.is_symlink():
        os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block
    succeeds. ``path`` must pass check_file_output; a link's target is what is replaced."""
    path = Path(path)
    target = check_file_output(path)
    _make_parent(target)
    with refused_writes(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with refused_writes(path):
            yield tmp_path
            give_umask_mode(tmp_path)
            os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path, kind: str | None = None) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``path`` as a whole on success, with
    the marker listing its contents. ``path`` must pass check_dir_output(path, kind)."""
    target = check_dir_output(path, kind)
    _make_parent(target)
    with refused_writes(path):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp",
                                    dir=target.parent))
    try:
        with refused_writes(path):
            yield tmp
            (tmp / MARKER).write_text(marker_text(tmp), encoding="utf-8")
            give_umask_mode(tmp)
            if target.exists():
                # Two renames: the old folder is gone only once the new one is in place.
                old = tmp.with_name(tmp.name[:-len(".tmp")] + ".old")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: object) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
