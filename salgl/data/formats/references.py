"""Where an annotation's image reference may lead: into the images folder the settings name.

Annotation files often come from elsewhere (an export, a download), so a reference (a COCO
``file_name``, a table's image cell) is trusted only as a name below its images folder:
backslashes read as slashes, ``..`` segments are refused, and so are absolute paths unless the
dataset's ``absolute_paths`` setting allows them. Links inside the folder are followed (a link
to a photo kept on another disk is a usual set-up), but nothing whose path, as written or with
its links resolved, lies in /proc, /sys or /dev is accepted, even with ``absolute_paths``; and
the readers open an image only once it is a regular file. Every refusal names the annotation
file and its row (or image id) and the value, before anything is read or written.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from salgl.data.prepared import name_problem
from salgl.errors import SalglError, shown

SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")
ABSOLUTE_HINT = "set absolute_paths: true in the dataset's prepare block to allow absolute ones"


class ImageReference(NamedTuple):
    """The file a reference names, and the reference as messages show it (slashes, no ./)."""

    path: Path
    name: str


def system_folder(path: Path) -> str | None:
    """The system folder ``path`` lies in, as written or once its links are resolved."""
    for candidate in (os.path.abspath(path), os.path.realpath(path)):
        for folder in SYSTEM_FOLDERS:
            if candidate == folder or candidate.startswith(folder + "/"):
                return folder
    return None


def image_reference(value: str, folder: Path, where: str, absolute_paths: bool = False,
                    extension: str = "") -> ImageReference:
    """The image ``value`` names below ``folder`` (``extension`` added to a bare name);
    refuses, naming ``where`` (file and row), what leads outside it or what the prepared lists
    could not hold. Existence is the caller's check (it words "not found" its own way)."""
    name = value.strip().replace("\\", "/")
    if not name:
        raise SalglError(f"{where}: empty image name")
    if extension and not PurePosixPath(name).suffix:
        name += extension.replace("\\", "/")  # checked with the name: it could hold ../
    problem = name_problem(name, label=False)
    if problem:
        raise SalglError(f"{where}: image name {shown(name)} {problem} (the prepared lists "
                         "cannot hold it; rename the file)")
    pure = PurePosixPath(name)
    if ".." in pure.parts:
        raise SalglError(f"{where}: image {shown(name)} leads out of the images folder "
                         f"{folder} ('..' is not allowed)")
    if pure.is_absolute() and not absolute_paths:
        raise SalglError(f"{where}: image {shown(name)} is an absolute path; image names are "
                         f"relative to the images folder {folder} ({ABSOLUTE_HINT})")
    path = Path(folder) / pure
    system = system_folder(path)
    if system:
        raise SalglError(f"{where}: image {shown(name)} is a system file (it lies in "
                         f"{system}), not an image")
    return ImageReference(path, pure.as_posix())


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be opened as an image file: "not found" (a broken link too),
    "not a regular file" (a folder, pipe or device: never opened) or None."""
    if path.is_file():
        return None
    return "not a regular file" if os.path.exists(path) else "not found"


def image_key(path: Path) -> str:
    """What makes two references the same image: the absolute path, normalised, so
    "a.jpg", "./a.jpg" and the same file written absolutely are one image."""
    return os.path.abspath(path)
