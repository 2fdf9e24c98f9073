"""Write outputs under a temporary name and rename, so a failure never leaves half a file.

Every output gets, just before its rename, the permissions an ordinary new file or folder
would get under the process umask: ``mkstemp`` alone makes files 0600 and folders 0700, and
some libraries (safetensors) replace the file they are given with one of their own, also
0600, which colleagues on a shared server could not read. This is the one place that
decides an output's mode. A write that fails for a reason of the file system (disk full,
permission denied, read-only folder) becomes one SalglError naming the path; the earlier
output stays as it was.

It also decides what may be written at all (issue 20: nothing outside what the user named is
touched). A file output is a missing path or a regular file; a link is followed to a regular
file the user can write (the target is replaced, the link kept); a folder, device, FIFO or
socket is refused. A folder output is replaced as a whole only when it is missing, empty,
holds the marker file salgl writes into every output folder, or holds nothing but what
earlier salgl versions wrote into that kind of folder (DVC keeps outputs with
``persist: true``). Commands call these checks before any work, so a refusal changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from salgl.errors import SalglError

# Errors that say the file system refused a write, not that the program is wrong.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                errno.EFBIG, errno.ENAMETOOLONG, errno.ENOTDIR}


# Written into every output folder, with fixed content: DVC hashes these folders, and the same
# run must give the same hash.
MARKER = ".salgl-output"
MARKER_TEXT = ("Written by salgl. salgl replaces this folder as a whole when it writes it "
               "again: keep your own files elsewhere.\n")

# What salgl versions before the marker wrote into each kind of output folder (relative paths,
# folders included): such a folder is still replaced, anything else in it stops the command.
LEGACY_CONTENTS = {
    "prepared": re.compile(r"labels\.txt|(train|val|test)\.tsv|meta\.json|scenes\.tsv"
                           r"|ignore(_(train|val|test))?\.npy"
                           r"|images(/(train|val|test)(/\d+\.png)?)?"),
    "embeddings": re.compile(r"vectors\.npy|info\.json"),
}

UNCHANGED = "nothing was changed"


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


def write_error(path: str | Path, exc: OSError) -> SalglError:
    """One line naming the output and the file system's reason."""
    reason = exc.strerror or str(exc)
    return SalglError(f"{path}: cannot write ({reason}); earlier outputs are unchanged")


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


def _what(mode: int) -> str:
    """A file system entry's kind, as a message names it."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a regular file"),
             (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISLNK, "a link"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def _check_ancestors(path: Path) -> None:
    """Refuse an output below a path that exists but is not a folder."""
    for parent in Path(path).absolute().parents:
        if os.path.exists(parent):
            if not os.path.isdir(parent):
                raise SalglError(f"{path}: cannot be written: {parent} is not a folder; "
                                 f"{UNCHANGED}")
            return


def _link_target(path: Path) -> tuple[Path, os.stat_result]:
    """Where a link leads, refused when it leads nowhere."""
    target = Path(os.path.realpath(path))
    try:
        return target, os.stat(path)  # the kernel's lookup: also /proc's links to pipes
    except OSError as exc:
        reason = "does not exist" if exc.errno == errno.ENOENT else (exc.strerror or str(exc))
        raise SalglError(f"{path}: is a link to {target}, which {reason}; "
                         f"{UNCHANGED}") from None


def check_file_output(path: str | Path) -> Path:
    """The file a write to ``path`` replaces: ``path`` itself when it is missing or a regular
    file, the target of a link to a regular file the user can write; anything else (a folder,
    a device, a FIFO, a socket, a link to one of them or to nothing) is refused."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        _check_ancestors(path)
        return path
    except NotADirectoryError:
        _check_ancestors(path)
        raise
    except OSError as exc:
        raise write_error(path, exc) from None
    if stat.S_ISREG(mode):
        return path
    if not stat.S_ISLNK(mode):
        raise SalglError(f"{path}: is {_what(mode)}, not a regular file; {UNCHANGED}")
    target, info = _link_target(path)
    if not stat.S_ISREG(info.st_mode):
        raise SalglError(f"{path}: is a link to {target}, which is {_what(info.st_mode)}, not "
                         f"a regular file; {UNCHANGED}")
    if "/.dvc/cache/" in target.as_posix():
        # DVC's symlink/hardlink cache types link outputs to its cache: writing through the
        # link would change the cached object of every commit that shares it.
        raise SalglError(f"{path}: is a link into DVC's cache ({target}); run `dvc unprotect "
                         f"{path}` first; {UNCHANGED}")
    if not os.access(target, os.W_OK):
        raise SalglError(f"{path}: is a link to {target}, which you cannot write; "
                         f"{UNCHANGED}")
    return target


def _holds_cwd(folder: Path) -> bool:
    try:
        cwd = Path(os.path.realpath(os.getcwd()))
    except OSError:
        return False
    return cwd == folder or cwd.is_relative_to(folder)


def _first_stranger(folder: Path, kind: str | None) -> str | None:
    """The first entry of an existing output folder that salgl did not write, or None when
    the folder may be replaced (empty, marked, or only what earlier versions wrote)."""
    if (folder / MARKER).is_file():
        return None
    known = LEGACY_CONTENTS.get(kind or "")
    unreadable: list[str] = []
    for top, dirs, files in os.walk(folder, onerror=lambda e: unreadable.append(e.filename)):
        for name in sorted(dirs) + sorted(files):
            relative = (Path(top) / name).relative_to(folder).as_posix()
            if known is None or not known.fullmatch(relative):
                return relative
    return unreadable[0] if unreadable else None


def check_dir_output(path: str | Path, kind: str | None = None) -> Path:
    """The real folder that writing ``path`` as a whole replaces (links and ``.`` resolved,
    so its temporary sibling is never made inside it); refused when it exists as anything
    but a folder, holds the current folder, or holds files salgl did not write.

    ``kind`` ("prepared", "embeddings") names the folders of earlier salgl versions,
    written before the marker, that may still be replaced."""
    path = Path(path)
    if os.path.islink(path):
        _link_target(path)  # a link to nothing is refused
    target = Path(os.path.realpath(path))
    if _holds_cwd(target):
        raise SalglError(f"{path}: is the current folder or holds it; an output folder is "
                         f"replaced as a whole, so name a folder inside it; {UNCHANGED}")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        _check_ancestors(target)
        return target
    except OSError as exc:
        raise write_error(path, exc) from None
    if not stat.S_ISDIR(mode):
        raise SalglError(f"{path}: is {_what(mode)}, not a folder; {UNCHANGED}")
    stranger = _first_stranger(target, kind)
    if stranger is not None:
        raise SalglError(f"{path}: holds files salgl did not write (first: {stranger}); an "
                         "output folder is replaced only when it is empty or was written by "
                         f"salgl; {UNCHANGED}")
    return target


def _resolved(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _input_error(output: str | Path, relation: str, what: str, source: str | Path
                 ) -> SalglError:
    return SalglError(f"{output}: {relation} an input of this command ({what}: {source}); "
                      f"choose another output; {UNCHANGED}")


def check_not_input(output: str | Path, inputs: Iterable[tuple[str, str | Path | None]]
                    ) -> None:
    """Refuse a file output that is one of the command's inputs ((description, path) pairs),
    also through links or a second name of the same file."""
    for what, source in inputs:
        if source is not None and (_resolved(output) == _resolved(source)
                                   or _same_file(output, source)):
            raise _input_error(output, "is", what, source)


def check_apart(output: str | Path, inputs: Iterable[tuple[str, str | Path | None]],
                whole: bool = True) -> None:
    """Refuse an output that is an input ((description, path) pairs) or lies inside an input
    folder, and, when it is a folder replaced as a ``whole``, one that holds an input:
    writing it would lose or change what the command reads."""
    out = _resolved(output)
    for what, source in inputs:
        if source is None:
            continue
        src = _resolved(source)
        if out == src or _same_file(output, source):
            raise _input_error(output, "is", what, source)
        if out.is_relative_to(src):
            raise _input_error(output, "lies inside", what, source)
        if whole and src.is_relative_to(out):
            raise _input_error(output, "holds", what, source)


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
    the marker file in it. ``path`` must pass check_dir_output(path, kind)."""
    target = check_dir_output(path, kind)
    _make_parent(target)
    with refused_writes(path):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp",
                                    dir=target.parent))
    try:
        with refused_writes(path):
            yield tmp
            (tmp / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
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
