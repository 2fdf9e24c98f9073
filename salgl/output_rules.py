"""What a command may write: nothing outside the paths the user named (issue 20).

A file output is a missing path or a regular file; a link is followed to a regular file the
user can write (the target is replaced, the link kept); a folder, device, FIFO or socket is
refused. A folder that salgl replaces as a whole (prepared, embeddings, the maps of `salgl
predict --explain`) gets a marker file listing everything salgl wrote into it, and is
replaced only when it is missing, empty, holds nothing its marker does not list (nor, for
the maps, anything but PNGs), or (no marker: an earlier salgl version wrote it; DVC keeps
outputs with ``persist: true``) holds nothing but what those versions wrote there. A folder
that salgl writes file by file (tables, figures, training curves, resume state) must hold
nothing but the names salgl writes into that kind of folder. A link or a special file inside
an output folder is never salgl's: files salgl names inside its folders are never written
through links. check_outputs, run by the command line before a command does any work,
applies all of this to a command's named outputs and keeps them apart from its inputs and
from each other, so a refusal changes nothing. How an allowed output is then written:
salgl.atomic.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from salgl.errors import SalglError, printable

# Errors that say the file system refused a write, not that the program is wrong.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                errno.EFBIG, errno.ENAMETOOLONG, errno.ENOTDIR}

# A path in an error message is cut to this many characters: a path of 100 KB (made from a
# huge setting) still gives one readable line.
PATH_CHARS = 200

# Written into every folder salgl replaces as a whole: this first line, then every file and
# folder salgl wrote into it (relative paths, folders ending in "/"), sorted, one per line.
# The same run writes the same marker: DVC hashes these folders, and the same run must give
# the same hash.
MARKER = ".salgl-output"
MARKER_HEADER = ("Written by salgl, with the files and folders listed below. salgl replaces "
                 "this folder as a whole only while it holds nothing else: keep your own "
                 "files elsewhere.")
# The marker of the first versions that wrote one, without the list: such a folder's names
# are checked like those of a folder without a marker.
FIRST_MARKER_TEXT = ("Written by salgl. salgl replaces this folder as a whole when it writes "
                     "it again: keep your own files elsewhere.\n")
_MARKER_LIMIT = 64 << 20  # a larger file is no marker of salgl's

# The training curves DVCLive writes for salgl (earlier versions logged without "live/").
_LIVE = r"metrics\.json|plots(/metrics(/live)?(/(train|val|test)(/\w+\.tsv)?)?)?"
# For each kind of output folder, the relative paths (folders included) salgl writes there:
# for the folders written file by file ("eval", "figures", "live", "state") what this version
# and earlier ones write; for the folders replaced as a whole ("prepared", "embeddings") what
# versions before the marker wrote. A folder holding anything else stops the command.
LEGACY_CONTENTS = {
    "prepared": re.compile(r"labels\.txt|(train|val|test)\.tsv|meta\.json|scenes\.tsv"
                           r"|ignore(_(train|val|test))?\.npy"
                           r"|images(/(train|val|test)(/\d+\.png)?)?"),
    "embeddings": re.compile(r"vectors\.npy|info\.json"),
    "eval": re.compile(r"per_label_ap\.csv|scene_usage\.csv"),
    "figures": re.compile(r"training_curves\.png|per_label_ap\.png|pr_curves\.(csv|png)"
                          r"|pr(/[^/]+\.csv)?|scene_\d+_(cooccurrence|cloud)\.png"
                          r"|scene_(top_labels|matching)\.png|group_\w+\.png"
                          r"|explanations\.png"),
    "live": re.compile(_LIVE),
    "state": re.compile(rf"README\.txt|last\.safetensors|live(/({_LIVE}))?"),
}
# The kinds replaced as a whole (atomic_dir, with the marker); the others are written into.
# "explain" (salgl predict --explain) came with the marker, so it has no LEGACY_CONTENTS: a
# folder of it without a marker is salgl's only while it is empty.
WHOLE_KINDS = (None, "prepared", "embeddings", "explain")
# What a marked folder of a kind may hold besides its marker, even where the marker lists
# more: an explanation folder holds PNGs and nothing else, so a mistyped --explain never
# replaces a prepared or embeddings folder, whose markers list other files.
MARKED_CONTENTS = {"explain": re.compile(r"[^/]+\.png")}

# The note that keeps a resume-state folder, a DVC output, present in every clone (the
# current text first, then earlier ones): a README.txt of other content is not salgl's.
STATE_NOTES = (
    """Resume state of the train stage. While training runs, last.safetensors here holds
everything needed to continue from the last finished epoch, and live/ the training curves
that are copied to dvclive/ after each epoch (both are removed when training ends and are
never committed or pushed). This note keeps the folder, a DVC output, present in every
clone, so `dvc status` stays clean after `dvc pull`.
""",
    """Resume state of the train stage. While training runs, last.safetensors here holds
everything needed to continue from the last finished epoch (it is removed when training ends
and is never committed or pushed). This note keeps the folder, a DVC output, present in every
clone, so `dvc status` stays clean after `dvc pull`.
""")
# Files salgl writes with fixed content: (kind, relative path) -> the texts it writes.
FIXED_TEXTS = {("state", "README.txt"): STATE_NOTES}
_TEXT_LIMIT = 64 << 10

# What a killed atomic write leaves beside its target: ".NAME.XXXXXXXX.tmp" (mkstemp).
_LEFTOVER = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.tmp")

UNCHANGED = "nothing was changed"



def shown_path(path: str | Path | bytes) -> str:
    """A path as an error message shows it: control characters escaped, cut to PATH_CHARS."""
    text = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    return printable(text, PATH_CHARS)


def write_error(path: str | Path, exc: OSError) -> SalglError:
    """One line naming the output and the file system's reason."""
    reason = exc.strerror or str(exc)
    return SalglError(f"{shown_path(path)}: cannot write ({reason}); earlier outputs are "
                      "unchanged")


def use_error(path: str | Path | bytes, exc: OSError) -> SalglError:
    """One line for a file-system refusal met where it is not known whether the path was
    being read or written."""
    return SalglError(f"{shown_path(path)}: cannot be used ({exc.strerror or exc}); earlier "
                      "outputs are unchanged")




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
                raise SalglError(f"{shown_path(path)}: cannot be written: "
                                 f"{shown_path(parent)} is not a folder; {UNCHANGED}")
            return


def _link_target(path: Path) -> tuple[Path, os.stat_result]:
    """Where a link leads, refused when it leads nowhere."""
    target = Path(os.path.realpath(path))
    try:
        return target, os.stat(path)  # the kernel's lookup: also /proc's links to pipes
    except OSError as exc:
        reason = "does not exist" if exc.errno == errno.ENOENT else (exc.strerror or str(exc))
        raise SalglError(f"{shown_path(path)}: is a link to {shown_path(target)}, which "
                         f"{reason}; {UNCHANGED}") from None


def check_file_output(path: str | Path) -> Path:
    """The file a write to ``path`` replaces: ``path`` itself when it is missing or a regular
    file, the target of a link to a regular file the user can write; anything else (a folder,
    a device, a FIFO, a socket, a link to one of them or to nothing) is refused. Only a path
    the user named is followed through a link: files salgl names inside its output folders
    are checked with their folder (check_dir_output), which refuses links."""
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
    shown = shown_path(path)
    if not stat.S_ISLNK(mode):
        raise SalglError(f"{shown}: is {_what(mode)}, not a regular file; {UNCHANGED}")
    target, info = _link_target(path)
    if not stat.S_ISREG(info.st_mode):
        raise SalglError(f"{shown}: is a link to {shown_path(target)}, which is "
                         f"{_what(info.st_mode)}, not a regular file; {UNCHANGED}")
    if "/.dvc/cache/" in target.as_posix():
        # DVC's symlink/hardlink cache types link outputs to its cache: writing through the
        # link would change the cached object of every commit that shares it.
        raise SalglError(f"{shown}: is a link into DVC's cache ({shown_path(target)}); run "
                         f"`dvc unprotect {shown}` first; {UNCHANGED}")
    if not os.access(target, os.W_OK):
        raise SalglError(f"{shown}: is a link to {shown_path(target)}, which you cannot "
                         f"write; {UNCHANGED}")
    return target


def _holds_cwd(folder: Path) -> bool:
    try:
        cwd = Path(os.path.realpath(os.getcwd()))
    except OSError:
        return False
    return cwd == folder or cwd.is_relative_to(folder)


def _small_text(path: Path, limit: int) -> str | None:
    """The UTF-8 text of a regular file of at most ``limit`` bytes, else None; a link or a
    FIFO put in its place is not followed or waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = fh.read(limit + 1)
    if len(data) > limit:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _listed(folder: Path) -> set[str] | None:
    """The entries the folder's marker lists, or None when it has no marker of this format."""
    text = _small_text(folder / MARKER, _MARKER_LIMIT)
    if text is None or not text.endswith("\n"):
        return None
    header, *entries = text[:-1].split("\n")
    return set(entries) if header == MARKER_HEADER else None


def _own_entry(folder: Path, rel: str, mode: int, kind: str | None) -> bool:
    """Whether an entry of a folder without a marker (``rel`` from the folder, ``mode`` from
    lstat) is one that salgl writes into a folder of ``kind``: a regular file or a folder
    of one of the kind's names, a fixed text as salgl writes it, or the temporary file of a
    killed write of one."""
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return False
    if rel == MARKER:
        return kind in WHOLE_KINDS and _small_text(folder / rel, _TEXT_LIMIT) == FIRST_MARKER_TEXT
    names = LEGACY_CONTENTS.get(kind or "")
    if names is None:
        return False
    if names.fullmatch(rel):
        if stat.S_ISDIR(mode) != ("." not in rel.rpartition("/")[2]):
            return False  # salgl's folders have names without a dot, its files with one
        texts = FIXED_TEXTS.get((kind, rel))
        return texts is None or _small_text(folder / rel, _TEXT_LIMIT) in texts
    head, _, name = rel.rpartition("/")
    leftover = _LEFTOVER.fullmatch(name)
    return bool(leftover and stat.S_ISREG(mode)
                and names.fullmatch(f"{head}/{leftover.group(1)}" if head
                                    else leftover.group(1)))


def _described(path: Path, rel: str, mode: int) -> str:
    """An entry that is no regular file or folder, as a message names it."""
    what = _what(mode)
    if stat.S_ISLNK(mode) and "/.dvc/cache/" in os.path.realpath(path):
        what += " into DVC's cache"
    return f"{rel}, {what}"


def _first_stranger(folder: Path, kind: str | None) -> str | None:
    """The first entry of an existing output folder that salgl did not write (with what it
    is, when it is no regular file or folder), or None when salgl may write the folder."""
    listed = _listed(folder) if kind in WHOLE_KINDS else None
    unreadable: list[str] = []
    for top, dirs, files in os.walk(folder, onerror=lambda e: unreadable.append(e.filename)):
        dirs.sort()
        for name in dirs + sorted(files):
            path = Path(top) / name
            rel = path.relative_to(folder).as_posix()
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                return rel
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                return _described(path, rel, mode)
            if listed is not None:
                entry = f"{rel}/" if stat.S_ISDIR(mode) else rel
                allowed = MARKED_CONTENTS.get(kind or "")
                own = rel == MARKER or (entry in listed and (
                    allowed is None or allowed.fullmatch(entry) is not None))
            else:
                own = _own_entry(folder, rel, mode, kind)
            if not own:
                return rel
    if unreadable:
        first = Path(unreadable[0])
        return first.relative_to(folder).as_posix() if first.is_relative_to(folder) else \
            str(first)
    return None


def check_dir_output(path: str | Path, kind: str | None = None) -> Path:
    """The real folder that writing ``path`` replaces or writes into (links and ``.``
    resolved, so a temporary sibling is never made inside it); refused when it exists as
    anything but a folder, holds the current folder, or holds anything salgl did not write
    (links and special files included: salgl never writes through them).

    ``kind`` (LEGACY_CONTENTS) names what salgl writes into that kind of folder; a folder of a
    kind in WHOLE_KINDS is replaced as a whole, and its marker lists what salgl wrote."""
    path = Path(path)
    whole = kind in WHOLE_KINDS
    shown = shown_path(path)
    if os.path.islink(path):
        _link_target(path)  # a link to nothing is refused
    target = Path(os.path.realpath(path))
    if _holds_cwd(target):
        why = ("an output folder is replaced as a whole" if whole
               else "an output folder holds only what salgl writes there")
        raise SalglError(f"{shown}: is the current folder or holds it; {why}, so name a "
                         f"folder inside it; {UNCHANGED}")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        _check_ancestors(target)
        return target
    except OSError as exc:
        raise write_error(path, exc) from None
    if not stat.S_ISDIR(mode):
        raise SalglError(f"{shown}: is {_what(mode)}, not a folder; {UNCHANGED}")
    stranger = _first_stranger(target, kind)
    if stranger is not None:
        rule = ("an output folder is replaced only when it holds nothing but what salgl "
                "wrote there" if whole else "salgl writes into an output folder only when "
                "it holds nothing but what salgl writes there")
        raise SalglError(f"{shown}: holds files salgl did not write (first: "
                         f"{shown_path(stranger)}); {rule}; {UNCHANGED}")
    return target


def remove_own(root: Path, kind: str, under: str = "", keep: Collection[str] = (),
               leftovers_only: bool = False) -> None:
    """Remove what salgl writes into a folder of ``kind`` at or under ``root/under`` (a file
    or a folder), except the relative paths in ``keep`` (or, with ``leftovers_only``, only
    the temporary files of killed writes), and then the folders of salgl's names left empty.
    Nothing else is touched and no link is followed."""
    start = root / under if under else root
    try:
        start_mode = os.lstat(start).st_mode
    except OSError:
        return
    entries = []
    if stat.S_ISDIR(start_mode):
        entries = [Path(top) / name for top, dirs, files in os.walk(start, topdown=False)
                   for name in sorted(files) + sorted(dirs)]
    if under:
        entries.append(start)
    for path in entries:
        rel = path.relative_to(root).as_posix()
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue
        if rel in keep or not _own_entry(root, rel, mode, kind):
            continue
        if stat.S_ISREG(mode) and (not leftovers_only or _LEFTOVER.fullmatch(path.name)):
            path.unlink(missing_ok=True)
        elif stat.S_ISDIR(mode) and not leftovers_only:
            with contextlib.suppress(OSError):  # not empty: it holds what must stay
                path.rmdir()


def _resolved(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _relation(output: str | Path, other: str | Path, whole: bool) -> str | None:
    """How ``output`` meets ``other``: "is" (also through links or a second name of the same
    file), "lies inside", "holds" (only for a ``whole`` folder), or None when apart."""
    out, src = _resolved(output), _resolved(other)
    if out == src or _same_file(output, other):
        return "is"
    if out.is_relative_to(src):
        return "lies inside"
    if whole and src.is_relative_to(out):
        return "holds"
    return None


def _input_error(output: str | Path, relation: str, what: str, source: str | Path
                 ) -> SalglError:
    return SalglError(f"{shown_path(output)}: {relation} an input of this command ({what}: "
                      f"{shown_path(source)}); choose another output; {UNCHANGED}")


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
    folder, and, when it is a folder written as a ``whole``, one that holds an input:
    writing it would lose or change what the command reads."""
    for what, source in inputs:
        relation = _relation(output, source, whole) if source is not None else None
        if relation is not None:
            raise _input_error(output, relation, what, source)


@dataclass(frozen=True)
class Output:
    """Something a command writes: a file, or a folder of ``kind`` (LEGACY_CONTENTS)."""

    what: str  # how a message names it: its option ("--metrics") or a description
    path: Path
    kind: str | None = None  # None: a file output


def check_apart_outputs(output: Output, others: Sequence[Output]) -> None:
    """Refuse an output that is, lies inside or holds another output of the command."""
    for other in others:
        relation = _relation(output.path, other.path, whole=True)
        if relation is not None:
            raise SalglError(f"{shown_path(output.path)}: {relation} another output of "
                             f"this command ({other.what}: {shown_path(other.path)}); "
                             f"choose another output; {UNCHANGED}")


@dataclass(frozen=True)
class Input:
    """Something a command reads; ``made_by`` names the stage that writes a required one."""

    what: str
    path: Path | None
    made_by: str | None = None


def check_outputs(outputs: Sequence[Output], inputs: Sequence[Input]) -> None:
    """Before a command does any work: its required inputs exist, and each output, in order,
    is apart from every input (is none, lies inside none, and, a folder, holds none) and from
    the outputs named before it, and may be written (check_file_output, check_dir_output)."""
    for source in inputs:
        if source.made_by and source.path is not None and not os.path.exists(source.path):
            raise SalglError(f"{shown_path(source.path)}: not found ({source.what}, "
                             f"written by {source.made_by})")
    named = [(source.what, source.path) for source in inputs]
    for k, output in enumerate(outputs):
        folder = output.kind is not None
        check_apart(output.path, named, whole=folder)
        check_apart_outputs(output, outputs[:k])
        if folder:
            check_dir_output(output.path, output.kind)
        else:
            check_file_output(output.path)


def marker_text(folder: Path) -> str:
    """The marker of ``folder``: MARKER_HEADER, then every file and folder in it (folders
    ending in "/"), sorted, one per line."""
    entries = []
    for top, dirs, files in os.walk(folder):
        base = Path(top).relative_to(folder)
        entries += [f"{(base / name).as_posix()}/" for name in dirs]
        entries += [(base / name).as_posix() for name in files]
    return "".join(f"{line}\n" for line in [MARKER_HEADER, *sorted(entries)]
                   if line != MARKER)
