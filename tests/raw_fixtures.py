"""Tiny raw copies of MS-COCO 2014, PASCAL VOC 2007 and NUS-WIDE in their real layouts.

Each holds the awkward cases real copies have: images without labels, missing and corrupt
image files, difficult objects, Windows paths with CRLF line ends. The expected prepared
output is written out in tests/test_real_datasets.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

NOT_AN_IMAGE = b"these bytes are not an image\n"


def write_jpeg(path: Path, seed: int, size: int = 24) -> Path:
    """A small JPEG with a colour of its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = tuple(int(c) for c in np.random.default_rng(seed).integers(0, 256, 3))
    Image.new("RGB", (size, size), colour).save(path, format="JPEG", quality=90)
    return path


def truncated_jpeg_bytes(size: int = 64, keep: float = 0.6) -> bytes:
    """A noisy JPEG cut short inside its scan data: opens fine, fails to decode."""
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    return data[:int(len(data) * keep)]


# --- MS-COCO 2014 ------------------------------------------------------------------------

COCO_CATEGORIES = [  # non-contiguous ids, listed out of order
    {"supercategory": "animal", "id": 7, "name": "zebra"},
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "outdoor", "id": 3, "name": "traffic light"},
]


def _coco_name(split: str, image_id: int) -> str:
    return f"COCO_{split}2014_{image_id:012d}.jpg"


def _coco_json(split: str, image_ids: list[int], annotations: list[tuple[int, int, int]],
               categories: list[dict]) -> dict:
    """annotations: (image id, category id, iscrowd)."""
    return {
        "info": {"description": "tiny COCO 2014 stand-in"},
        "images": [{"id": i, "file_name": _coco_name(split, i), "width": 24, "height": 24}
                   for i in image_ids],
        "annotations": [{"id": n + 1, "image_id": img, "category_id": cat, "iscrowd": crowd,
                         "bbox": [0, 0, 5, 5], "area": 25.0}
                        for n, (img, cat, crowd) in enumerate(annotations)],
        "categories": categories,
    }


def make_coco(root: Path) -> Path:
    """train: 10 person x2 + zebra, 11 crowd traffic light, 12 no annotation, 13 file missing,
    14 zebra; val: 20 traffic light + zebra, 21 corrupt, 22 person, 23 no annotation,
    24 truncated."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    train = _coco_json("train", [10, 11, 12, 13, 14],
                       [(10, 1, 0), (10, 7, 0), (10, 1, 0), (11, 3, 1), (13, 1, 0), (14, 7, 0)],
                       COCO_CATEGORIES)
    val = _coco_json("val", [20, 21, 22, 23, 24],
                     [(20, 3, 0), (20, 7, 0), (21, 1, 0), (22, 1, 0), (24, 7, 0)],
                     list(reversed(COCO_CATEGORIES)))
    for name, data in (("instances_train2014.json", train), ("instances_val2014.json", val)):
        (root / "annotations" / name).write_text(json.dumps(data), encoding="utf-8")
    for split, ids in (("train", [10, 11, 12, 14]), ("val", [20, 22, 23])):
        for i in ids:
            write_jpeg(root / f"{split}2014" / _coco_name(split, i), seed=i)
    (root / "val2014" / _coco_name("val", 21)).write_bytes(NOT_AN_IMAGE)
    (root / "val2014" / _coco_name("val", 24)).write_bytes(truncated_jpeg_bytes())
    return root


# --- PASCAL VOC 2007 ---------------------------------------------------------------------

def voc_xml(objects: list[tuple[str, int]], filename: str | None) -> str:
    """A VOC annotation; objects are (name, difficult)."""
    parts = ["<annotation>", "\t<folder>VOC2007</folder>"]
    if filename is not None:
        parts.append(f"\t<filename>{filename}</filename>")
    parts.append("\t<size><width>24</width><height>24</height><depth>3</depth></size>")
    for name, difficult in objects:
        parts += ["\t<object>", f"\t\t<name>\n\t\t\t{name}\n\t\t</name>",
                  "\t\t<pose>Unspecified</pose>", "\t\t<truncated>0</truncated>",
                  f"\t\t<difficult>{difficult}</difficult>",
                  "\t\t<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax>"
                  "</bndbox>", "\t</object>"]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


VOC_ANNOTATIONS = {  # id: (objects, <filename> or None)
    "000001": ([("dog", 0), ("person", 1)], "000001.jpg"),  # difficult on train: positive
    "000002": ([("cat", 0), ("cat", 0)], None),  # no <filename>: <id>.jpg
    "000003": ([("person", 0)], "000003.jpg"),  # image file missing
    "000004": ([("car", 1), ("car", 0), ("bicycle", 1)], "000004.jpg"),
    "000005": ([("tvmonitor", 0), ("sofa", 1)], "000005.jpeg"),  # file name not <id>.jpg
    "000006": ([("dog", 0)], "000006.jpg"),  # corrupt image
    "000007": ([("person", 1)], "000007.jpg"),  # only difficult objects
}
VOC_SPLITS = {"trainval": ["000001", "000002", "000003"],
              "test": ["000004", "000005", "000006", "000007"]}


def make_voc(root: Path) -> Path:
    """VOCdevkit/VOC2007 layout with the ids of VOC_SPLITS."""
    for folder in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for split, ids in VOC_SPLITS.items():
        (root / "ImageSets/Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    for image_id, (objects, filename) in VOC_ANNOTATIONS.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(objects, filename))
        if image_id == "000006":
            (root / "JPEGImages" / filename).write_bytes(NOT_AN_IMAGE)
        elif image_id != "000003":
            write_jpeg(root / "JPEGImages" / (filename or f"{image_id}.jpg"), int(image_id))
    return root


# --- NUS-WIDE ----------------------------------------------------------------------------

NUS_CONCEPTS = ["animal", "beach", "clouds", "sky"]
NUS_IMAGES = [  # (folder\file, positive concepts, split, on disk as)
    ("actor\\0001_2124494179.jpg", ["animal", "sky"], "train", "jpeg"),
    ("beach\\0002_2232400321.jpg", ["beach"], "test", "jpeg"),
    ("sky\\0003_1211003051.jpg", [], "train", "jpeg"),  # no positive label: dropped
    ("sky\\0004_2370339281.jpg", ["sky"], "test", None),  # absent on disk
    ("animal\\0005_2401244312.jpg", ["animal"], "train", "corrupt"),
    ("beach\\0006_1234567890.jpg", ["beach", "clouds", "sky"], "test", "jpeg"),
    ("actor\\0007_3050505050.jpg", ["clouds"], "train", "jpeg"),
]


def _crlf(lines: list[str]) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode()


def make_nuswide(root: Path) -> Path:
    """NUS-WIDE layout: CRLF files, Windows paths; the test list uses short relative paths."""
    for folder in ("Flickr", "Groundtruth/AllLabels", "ImageList"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "Concepts81.txt").write_bytes(_crlf(NUS_CONCEPTS + [""]))
    full = [f"C:\\ImageData\\Flickr\\{key}" for key, *_ in NUS_IMAGES]
    (root / "ImageList/Imagelist.txt").write_bytes(_crlf(full))
    train = [p for p, (_, _, split, _) in zip(full, NUS_IMAGES, strict=True) if split == "train"]
    test = [key for key, _, split, _ in NUS_IMAGES if split == "test"]
    (root / "ImageList/TrainImagelist.txt").write_bytes(_crlf(train))
    (root / "ImageList/TestImagelist.txt").write_bytes(_crlf(test))
    for concept in NUS_CONCEPTS:
        column = [str(int(concept in names)) for _, names, _, _ in NUS_IMAGES]
        (root / f"Groundtruth/AllLabels/Labels_{concept}.txt").write_bytes(_crlf(column))
    for n, (key, _, _, disk) in enumerate(NUS_IMAGES):
        path = root / "Flickr" / key.replace("\\", "/")
        if disk == "jpeg":
            write_jpeg(path, seed=100 + n)
        elif disk == "corrupt":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(NOT_AN_IMAGE)
    return root
