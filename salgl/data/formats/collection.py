"""What every format reader returns, and the checks all of them share.

A reader turns a user's annotation files into a ``Collection``: label names, samples per split,
what was left out on purpose and why, and sentences for the summary. Keeping readers free of
preparing and image decoding lets each be tested on tiny inputs and reused by the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from salgl.data.formats.references import image_key
from salgl.data.images import Sample
from salgl.data.prepared import check_label_names
from salgl.errors import SalglError, shown

NAMED_SPLITS = ("train", "val", "test")
ALL = "all"
# Names annotation tools and users give their splits (Roboflow exports "valid").
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test"}


@dataclass
class Collection:
    """Labels and samples of a user's collection, before any image is decoded.

    ``splits`` keys are a subset of train/val/test when the data names its splits, else exactly
    {"all"}. ``dropped`` holds {"path", "reason"} for images left out on purpose ("split"
    too when they came from a named split); ``notes`` are human sentences for the summary.
    """

    labels: list[str]
    splits: dict[str, list[Sample]]
    dropped: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def split_name(value: str) -> str | None:
    """train/val/test for a split name as users write it (any case, "valid", "validation")."""
    return SPLIT_ALIASES.get(value.strip().lower())


def _split_keys_problem(keys: list[str]) -> str | None:
    if not keys:
        return "no splits"
    if ALL in keys and len(keys) > 1:
        return f"split 'all' cannot go with others ({', '.join(keys)})"
    bad = [k for k in keys if k != ALL and k not in NAMED_SPLITS]
    if bad:
        return f"split {bad[0]!r} is not train, val, test or all"
    return None


def check_collection(c: Collection, where: str) -> None:
    """Refuse a collection the pipeline could not use, naming ``where`` and the culprit.

    Label names must suit the prepared format; splits must be train/val/test or exactly all,
    each non-empty; no image may appear twice (within or across splits, however its path is
    written: references.image_key); every sample's label and ignored names must be labels of
    the collection.
    """
    check_label_names(c.labels, where)
    problem = _split_keys_problem(list(c.splits))
    if problem:
        raise SalglError(f"{where}: {problem}")
    known = set(c.labels)
    seen: dict[str, str] = {}
    for name, samples in c.splits.items():
        if not samples:
            raise SalglError(f"{where}: split {name!r} has no images")
        for sample in samples:
            key = image_key(sample.path)
            if key in seen:
                place = (f"twice in split {name!r}" if seen[key] == name
                         else f"in splits {seen[key]!r} and {name!r}")
                raise SalglError(f"{where}: image {sample.path} appears {place}")
            seen[key] = name
            unknown = [n for n in (*sample.labels, *sample.ignored) if n not in known]
            if unknown:
                raise SalglError(f"{where}: image {sample.path} has unknown label "
                                 f"{shown(unknown[0])}")
