"""PASCAL VOC 2007 as a multi-label benchmark: trainval -> train, test -> test.

Difficult objects follow the VOC classification protocol: on train they count as positives;
on test a class is positive when at least one of its objects is not difficult, and a class
present only as difficult objects is neither positive nor scored (ignore.npy holds 1 there).
Test images whose objects are all difficult stay in the list (negative for all other classes),
which keeps the standard 4,952 test images.
"""

from __future__ import annotations

import logging
from pathlib import Path
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as DefusedET

from salgl.data.images import Sample, check_layout, drop_unreadable, write_real_prepared
from salgl.errors import SalglError

log = logging.getLogger("salgl")

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
SPLIT_FILES = {"train": "ImageSets/Main/trainval.txt", "test": "ImageSets/Main/test.txt"}
LAYOUT = ("Annotations/", "JPEGImages/", *SPLIT_FILES.values())
STANDARD_COUNTS = {"train": 5011, "test": 4952}


def read_ids(path: Path) -> list[str]:
    """Image ids, one per line (blank lines skipped)."""
    ids = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        image_id = line.strip()
        if not image_id:
            continue
        if len(image_id.split()) != 1:
            raise SalglError(f"{path}:{number}: expected one image id, found {image_id!r}")
        ids.append(image_id)
    return ids


def _parse(xml: Path) -> Element:
    """The XML root; a missing or malformed file is named (with its line when known)."""
    if not xml.is_file():
        raise SalglError(f"{xml}: missing annotation file")
    try:
        return DefusedET.parse(xml).getroot()
    except DefusedET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        where = f"{xml}:{line}" if line else str(xml)
        raise SalglError(f"{where}: not valid XML ({exc})") from None
    except DefusedXmlException as exc:
        raise SalglError(f"{xml}: refused unsafe XML ({exc})") from None


def _difficult(text: str | None, xml: Path) -> bool:
    value = (text or "0").strip() or "0"
    if value not in ("0", "1"):
        raise SalglError(f"{xml}: <difficult> is {value!r}, expected 0 or 1")
    return value == "1"


def read_annotation(xml: Path) -> tuple[str | None, list[tuple[str, bool]]]:
    """The image file name (if given) and every object's (class name, difficult)."""
    root = _parse(xml)
    objects = root.findall("object")
    if not objects:
        raise SalglError(f"{xml}: no <object> elements (every VOC 2007 image has at least one)")
    found = []
    for obj in objects:
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise SalglError(f"{xml}: an <object> has no <name>")
        if name not in VOC_CLASSES:
            raise SalglError(f"{xml}: unknown class name {name!r} (not one of the 20 VOC "
                             "classes)")
        found.append((name, _difficult(obj.findtext("difficult"), xml)))
    filename = (root.findtext("filename") or "").strip() or None
    return filename, found


def voc_sample(raw: Path, image_id: str, split: str) -> Sample:
    """Train counts difficult objects as positives; test ignores difficult-only classes."""
    filename, objects = read_annotation(raw / "Annotations" / f"{image_id}.xml")
    path = raw / "JPEGImages" / (filename or f"{image_id}.jpg")
    if split == "train":
        return Sample(path, sorted({name for name, _ in objects}))
    positive = {name for name, difficult in objects if not difficult}
    ignored = {name for name, _ in objects} - positive
    return Sample(path, sorted(positive), sorted(ignored))


def prepare_voc2007(raw: Path, out: Path, strict: bool = False, workers: int | None = None,
                    progress: bool = True, val_fraction: float = 0.0,
        seed: int = 0) -> dict:
    """Write PASCAL VOC 2007 in the prepared format into ``out``; returns meta.json's content."""
    raw, out = Path(raw), Path(out)
    nested = raw / "VOC2007"
    check_layout(raw, LAYOUT, "a PASCAL VOC 2007",
                 f" (did you mean {nested}?)" if nested.is_dir() else "")
    samples = {}
    for split, listing in SPLIT_FILES.items():
        log.info("reading %s annotations listed in %s", split, raw / listing)
        samples[split] = [voc_sample(raw, image_id, split) for image_id in read_ids(raw / listing)]
    kept, skipped = drop_unreadable(samples, strict, workers, progress)
    return write_real_prepared(out, "voc2007", raw, VOC_CLASSES, kept, [], skipped,
                               STANDARD_COUNTS, with_ignore=True,
                               val_fraction=val_fraction, seed=seed)
