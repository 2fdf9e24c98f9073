"""Find and read Fashion-MNIST (the item source of the embedded dataset) without torchvision.

Lookup order: the folder named in params, the system folder (Debian's dataset-fashion-mnist
package), an earlier download under ``data/raw/fashion-mnist``, then a torchvision download.
IDX files are parsed here with numpy so a corrupt file gives one clear message naming it.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import zlib
from pathlib import Path

import numpy as np

from salgl.errors import SalglError

log = logging.getLogger(__name__)

FASHION_LABELS = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)

SOURCE_KEY = "prepare.fashion_scenes.source"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
SYSTEM_DIR_ENV = "SALGL_FASHION_MNIST_SYSTEM_DIR"
OFFLINE_ENV = "SALGL_OFFLINE"
DOWNLOAD_DIR = Path("data/raw/fashion-mnist")

SPLIT_PREFIX = {"train": "train", "test": "t10k"}
IMAGE_MAGIC = 0x0803  # unsigned bytes, 3 dimensions
LABEL_MAGIC = 0x0801  # unsigned bytes, 1 dimension


def idx_names(split: str) -> tuple[str, str]:
    """Base names (without .gz) of the image and label files of ``split``."""
    prefix = SPLIT_PREFIX[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _all_names() -> list[str]:
    return [name for split in SPLIT_PREFIX for name in idx_names(split)]


def _find_file(folder: Path, name: str) -> Path | None:
    """The plain or gzipped file ``name`` in ``folder``; plain first (it is faster to read)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing(folder: Path) -> list[str]:
    return [name for name in _all_names() if _find_file(folder, name) is None]


def dataset_folder(root: Path) -> Path | None:
    """The folder under ``root`` that holds all four IDX files (root or torchvision's layout)."""
    for folder in (root, root / "FashionMNIST" / "raw", root / "raw"):
        if folder.is_dir() and not _missing(folder):
            return folder
    return None


def system_dir() -> Path:
    """The system folder; tests point the environment variable at an empty folder."""
    return Path(os.environ.get(SYSTEM_DIR_ENV) or SYSTEM_DIR)


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def find_source(configured: str | None) -> Path | None:
    """The folder with the IDX files, without downloading; a bad configured path is an error."""
    if configured:
        root = Path(configured).expanduser()
        folder = dataset_folder(root)
        if folder is None:
            what = "does not exist" if not root.exists() else (
                "lacks " + ", ".join(f"{n}[.gz]" for n in _missing(root)))
            raise SalglError(f"{SOURCE_KEY}: {root} {what} (expected the four Fashion-MNIST "
                             f"IDX files, plain or .gz, in it or in its FashionMNIST/raw/)")
        return folder
    return dataset_folder(system_dir()) or dataset_folder(DOWNLOAD_DIR)


def _download() -> Path | None:
    """Try torchvision's download into DOWNLOAD_DIR; None when offline or it fails."""
    if _offline():
        return None
    try:
        from torchvision.datasets import FashionMNIST

        for train in (True, False):
            FashionMNIST(root=str(DOWNLOAD_DIR), train=train, download=True)
    except Exception as exc:  # any failure means "not available here"
        log.warning("Fashion-MNIST download failed: %s", exc)
        return None
    return dataset_folder(DOWNLOAD_DIR)


def locate_source(configured: str | None) -> Path:
    """Like find_source, but downloads as a last resort and explains every place tried."""
    folder = find_source(configured) or _download()
    if folder is not None:
        return folder
    offline = " (skipped: SALGL_OFFLINE is set)" if _offline() else " (failed or offline)"
    raise SalglError(
        f"Fashion-MNIST not found. Tried: (1) params key {SOURCE_KEY} (not set); "
        f"(2) system folder {system_dir()}; (3) download into {DOWNLOAD_DIR}{offline}. "
        "Fix: apt-get install dataset-fashion-mnist, or set "
        f"{SOURCE_KEY} to a folder with the IDX files, or run once with internet access."
    )


def _read_bytes(path: Path) -> bytes:
    """File content, gunzipped when the name ends in .gz; a broken archive names the file."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise SalglError(f"{path}: cannot read ({exc}); the file is corrupt or truncated, "
                         "replace it") from None


def parse_idx(data: bytes, magic: int, where: Path) -> np.ndarray:
    """Decode one IDX array of unsigned bytes, checking its magic number and length."""
    if len(data) < 4:
        raise SalglError(f"{where}: truncated IDX file ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise SalglError(f"{where}: not an IDX file of the expected kind "
                         f"(magic 0x{found:08x}, expected 0x{magic:08x})")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise SalglError(f"{where}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(data) != header + size:
        raise SalglError(f"{where}: truncated or corrupt IDX file (shape {shape} needs "
                         f"{header + size} bytes, found {len(data)})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


@functools.lru_cache(maxsize=4)
def _read_split(folder: Path, split: str, stamp: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Parsed arrays; cached because tests and re-runs read the same 30 MB several times."""
    image_name, label_name = idx_names(split)
    image_path = _find_file(folder, image_name)
    label_path = _find_file(folder, label_name)
    if image_path is None or label_path is None:
        raise SalglError(f"{folder}: missing {image_name}[.gz] or {label_name}[.gz]")
    images = parse_idx(_read_bytes(image_path), IMAGE_MAGIC, image_path)
    labels = parse_idx(_read_bytes(label_path), LABEL_MAGIC, label_path).astype(np.int64)
    if images.shape[1:] != (28, 28):
        raise SalglError(f"{image_path}: images are {images.shape[1:]}, expected 28x28")
    if len(images) != len(labels):
        raise SalglError(f"{label_path}: {len(labels)} labels for {len(images)} images "
                         f"in {image_path.name}")
    if len(labels) and labels.max() >= len(FASHION_LABELS):
        raise SalglError(f"{label_path}: label {labels.max()} is not a Fashion-MNIST class")
    labels.flags.writeable = False
    return images, labels


def _stamp(folder: Path, split: str) -> tuple:
    """Size and mtime of the split's files, so the cache notices a replaced file."""
    out = []
    for name in idx_names(split):
        path = _find_file(folder, name)
        stat = path.stat() if path else None
        out.append((str(path), stat.st_size if stat else 0, stat.st_mtime_ns if stat else 0))
    return tuple(out)


def read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 28, 28) uint8 and labels (n,) int64 of ``split`` from a source folder."""
    if split not in SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(folder).resolve()
    return _read_split(folder, split, _stamp(folder, split))
