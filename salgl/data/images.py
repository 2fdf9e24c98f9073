"""Image checks and the shared last step of the real-benchmark preparers.

Real copies of MS-COCO, VOC and NUS-WIDE often miss files or hold truncated downloads. Every
listed image is decoded once at prepare time, so training never meets a broken file; what is
left out is recorded in meta.json with its reason.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from salgl.atomic import atomic_dir
from salgl.data.prepared import (
    SPLITS,
    check_list_entries,
    display_path,
    image_root_record,
    listed_path,
    write_prepared,
)
from salgl.data.split import carve_validation
from salgl.errors import SalglError
from salgl.runtime import cpu_cores

log = logging.getLogger("salgl")

MISSING = "missing"
CHUNK = 32  # images per task: few futures even for NUS-WIDE's 270k images


@dataclass
class Sample:
    """One image of a raw dataset: its file, positive labels and unscored (ignored) labels."""

    path: Path
    labels: list[str]
    ignored: list[str] = field(default_factory=list)


def decode_threads() -> int:
    """Threads suffice: PIL and file reads release the GIL while decoding."""
    return max(1, min(32, cpu_cores()))


def image_problem(path: Path) -> str | None:
    """Why ``path`` is unusable as an image, or None; a full decode catches truncated files."""
    if not path.is_file():
        return MISSING
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                # Scaled decoding still reads every entropy-coded byte (so truncation and
                # corrupt data still fail) but skips most of the inverse DCT work.
                img.draft(None, (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except UnidentifiedImageError:
        return "cannot decode: not an image format PIL can read"
    except Exception as exc:  # any decoder failure means training would fail on it
        return f"cannot decode: {exc}"
    return None


def _check_chunk(paths: Sequence[Path]) -> list[str | None]:
    return [image_problem(p) for p in paths]


def check_images(paths: list[Path], workers: int | None = None,
                 progress: bool = True) -> dict[Path, str]:
    """{path: reason} for the images that are missing or cannot be decoded, checked in parallel."""
    paths = list(paths)
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    problems: dict[Path, str] = {}
    with ThreadPoolExecutor(max_workers=workers or decode_threads()) as pool, \
            tqdm(total=len(paths), desc="checking images", unit="img", file=sys.stderr,
                 disable=not progress) as bar:
        for chunk, reasons in zip(chunks, pool.map(_check_chunk, chunks), strict=True):
            bar.update(len(chunk))
            problems.update((p, r) for p, r in zip(chunk, reasons, strict=True) if r)
    return problems


def drop_unreadable(splits: dict[str, list[Sample]], strict: bool, workers: int | None,
                    progress: bool, root: Path | None = None
                    ) -> tuple[dict[str, list[Sample]], list[dict]]:
    """Leave out missing or undecodable images (kept splits, skipped records); strict refuses.
    With ``root`` the records name images relative to it, as the lists do (own data: nothing
    outside the image folder is recorded), else as ``display_path`` shows them."""
    names = [name for name in SPLITS if name in splits]
    problems = check_images([s.path for name in names for s in splits[name]], workers, progress)
    failed = [(name, s.path) for name in names for s in splits[name] if s.path in problems]
    if failed and strict:
        path = failed[0][1]
        raise SalglError(f"{display_path(path)}: {problems[path]} (strict: {len(failed)} "
                         "missing or broken image(s) in all; without strict they are skipped "
                         "and recorded in meta.json)")
    skipped = [{"path": display_path(path) if root is None else listed_path(path, root),
                "split": name, "reason": problems[path]} for name, path in failed]
    kept = {name: [s for s in splits[name] if s.path not in problems] for name in names}
    return kept, skipped


def _ordered(names: Sequence[str], index: dict[str, int]) -> list[str]:
    """Label names without repeats, in class-index order."""
    return sorted(set(names), key=index.__getitem__)


def _ignore_matrix(samples: list[Sample], index: dict[str, int]) -> np.ndarray:
    ignore = np.zeros((len(samples), len(index)), dtype=np.uint8)
    for row, sample in enumerate(samples):
        ignore[row, [index[n] for n in sample.ignored]] = 1
    return ignore


def label_counts(samples: list[Sample], labels: Sequence[str]) -> dict[str, int]:
    counts = dict.fromkeys(labels, 0)
    for sample in samples:
        for name in set(sample.labels):
            counts[name] += 1
    return counts


def _summary(dataset: str, meta: dict, ignore: np.ndarray | None) -> str:
    """One line: what was written, what was left out and why, how it compares to the paper."""
    counts = meta["counts"]
    reasons = [s["reason"] for s in meta["skipped"]]
    missing = sum(r == MISSING for r in reasons)
    val = counts.get("val", {"images": 0})
    carved = f"{val['images']} val + " if "val" in counts else ""
    text = (f"{dataset}: {counts['train']['images']} train + {carved}"
            f"{counts['test']['images']} test images, {len(meta['labels'])} labels; dropped "
            f"{len(meta['dropped'])} without labels; skipped {len(reasons)} unreadable "
            f"({missing} missing, {len(reasons) - missing} cannot decode)")
    if ignore is not None:
        text += f"; {int(ignore.sum())} test image-label pairs unscored (ignore.npy)"
    standard = meta["standard_counts"]
    seen = {"train": counts["train"]["images"] + val["images"],
            "test": counts["test"]["images"]}
    if standard and any(seen[s] != standard[s] for s in seen):
        text += f"; the standard split has {standard['train']} train / {standard['test']} test"
    return text


def write_real_prepared(out: Path, dataset: str, raw: Path, labels: Sequence[str],
                        samples: dict[str, list[Sample]], dropped: list[dict],
                        skipped: list[dict], standard: dict[str, int] | None,
                        with_ignore: bool = False, extra: dict | None = None,
                        val_fraction: float = 0.0, seed: int = 0,
                        ignore_splits: Sequence[str] = ("test",),
                        image_root: Path | None = None) -> dict:
    """Write the prepared folder (replacing ``out`` only on success) and return its meta.

    Without a val split in ``samples``, ``val_fraction`` of the training samples become one
    (stratified). With ``with_ignore``, the unscored pairs of ``ignore_splits`` are written
    (ignore.npy for test, ignore_<split>.npy for the others when any pair is unscored).
    The lists name images relative to ``image_root`` (default ``raw``), recorded in meta."""
    index = {name: i for i, name in enumerate(labels)}
    if "val" not in samples:
        train, val = carve_validation(samples["train"],
                                      [[index[n] for n in s.labels] for s in samples["train"]],
                                      len(labels), val_fraction, seed,
                                      f"prepare.{dataset}.val_fraction")
        samples = {"train": train, **({"val": val} if val else {}), "test": samples["test"]}
    else:
        samples = {name: samples[name] for name in ("train", "val", "test")}
    ignores = {name: _ignore_matrix(samples[name], index) for name in ignore_splits
               if with_ignore and name in samples}
    ignores = {name: m for name, m in ignores.items() if name == "test" or m.any()}
    ignore = ignores.get("test")
    meta: dict = {
        "dataset": dataset,
        "source": Path(raw).as_posix(),
        "labels": list(labels),
        "counts": {name: {
            "images": len(samples[name]),
            "dropped_without_labels": sum(d["split"] == name for d in dropped),
            "skipped_broken": sum(s["split"] == name for s in skipped),
        } for name in samples},
        "label_counts": {name: label_counts(samples[name], labels) for name in samples},
        "standard_counts": standard,
        **(extra or {}),
        "dropped": dropped,
        "skipped": skipped,
    }
    if ignore is not None:
        meta["ignored_pairs"] = dict(zip(labels, ignore.sum(axis=0).tolist(), strict=True))
    meta["summary"] = _summary(dataset, meta, ignore)
    root = Path(image_root or raw)
    meta["image_root"] = image_root_record(root, Path(out))
    lists = {name: [(listed_path(s.path, root), _ordered(s.labels, index))
                    for s in samples[name]] for name in samples}
    for name, entries in lists.items():  # refused before anything is written
        check_list_entries(entries, display_path(Path(out) / f"{name}.tsv"))
    with atomic_dir(out, "prepared") as tmp:
        write_prepared(tmp, labels, lists, meta, ignores)
    log.info("%s -> %s", meta["summary"], display_path(out))
    if skipped:
        first = skipped[0]
        log.warning("%s: skipped %d missing or broken image(s), first %s (%s); listed in %s",
                    dataset, len(skipped), first["path"], first["reason"],
                    display_path(Path(out) / "meta.json"))
    return meta


def _present(raw: Path, entry: str) -> bool:
    """A trailing slash marks a folder, anything else a file."""
    if entry.endswith("/"):
        return (raw / entry).is_dir()
    return (raw / entry).is_file()


def check_layout(raw: Path, required: Sequence[str], what: str, hint: str = "") -> None:
    """Refuse a folder that lacks the dataset's entries, naming every missing one."""
    if not raw.is_dir():
        raise SalglError(f"{raw}: raw dataset folder not found")
    missing = [entry for entry in required if not _present(raw, entry)]
    if missing:
        raise SalglError(f"{raw}: not {what} folder: missing {', '.join(missing)}{hint}")
