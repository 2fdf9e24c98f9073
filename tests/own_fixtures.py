"""Users' own collections as annotation tools and spreadsheets export them, built tiny.

Each image shows its labels as bright squares in fixed cells (as tests/fakes.py does), so a
few epochs learn something and every metric is defined.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

PETS = ["cat", "dog", "traffic_light", "TeddyBear"]


def draw(path: Path, present: list[int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((32, 32, 3)) * 60).astype(np.uint8)
    for k in present:
        r, c = divmod(k, 4)
        pixels[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] = 230
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def label_sets(n: int, num_labels: int, seed: int) -> list[list[int]]:
    """n images, each with at least one label, every label frequent."""
    rng = np.random.default_rng(seed)
    sets = []
    for i in range(n):
        chosen = set(np.flatnonzero(rng.random(num_labels) < 0.4).tolist()) | {i % num_labels}
        sets.append(sorted(chosen))
    return sets


def coco_export(root: Path, counts: dict[str, int] | None = None) -> Path:
    """Roboflow-style export: one JSON per split in its own folder (train/, valid/, test/),
    0-based category ids with a placeholder parent category 0 that no annotation uses,
    file names with a sub-folder, one image without annotations per split."""
    counts = counts or {"train": 24, "valid": 8, "test": 8}
    seed = 0
    for split, n in counts.items():
        folder = root / split
        images, annotations = [], []
        for i, present in enumerate(label_sets(n, len(PETS), seed)):
            name = f"batch{i % 2}/img_{i:03d}.png"
            draw(folder / name, present, seed * 1000 + i)
            images.append({"id": i + 1, "file_name": name, "width": 32, "height": 32})
            annotations += [{"id": len(annotations) + 1, "image_id": i + 1,
                             "category_id": k + 1, "bbox": [0, 0, 8, 8], "segmentation": [],
                             "area": 64, "iscrowd": 0} for k in present]
        draw(folder / "batch0" / "empty.png", [], seed * 1000 + 999)
        images.append({"id": n + 1, "file_name": "batch0/empty.png", "width": 32, "height": 32})
        categories = [{"id": 0, "name": "pets", "supercategory": "none"}]
        categories += [{"id": k + 1, "name": name, "supercategory": "pets"}
                       for k, name in enumerate(PETS)]
        (folder / "_annotations.coco.json").write_text(json.dumps({
            "info": {"description": "exported"}, "licenses": [], "images": images,
            "annotations": annotations, "categories": categories}), encoding="utf-8")
        seed += 1
    return root


def tag_table(root: Path, n: int = 40) -> Path:
    """A space-separated tag CSV, image names without extension, no splits."""
    lines = ["image,tags"]
    for i, present in enumerate(label_sets(n, len(PETS), 7)):
        draw(root / "images" / f"photo{i:03d}.png", present, 7000 + i)
        lines.append(f"photo{i:03d},{' '.join(PETS[k] for k in present)}")
    table = root / "tags.csv"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return table


def onehot_table(root: Path, n: int = 40) -> Path:
    """A CheXpert-style table: 1.0 / 0.0 / -1.0 / empty cells, a text and a numeric column
    that are not labels."""
    findings = ["Effusion", "Edema", "Cardiomegaly"]
    rng = np.random.default_rng(12)  # not label_sets' seed: its draws decide presence
    lines = ["Path,Sex,Age," + ",".join(findings)]
    for i, present in enumerate(label_sets(n, len(findings), 11)):
        draw(root / "xrays" / f"patient{i:03d}.png", present, 11000 + i)
        cells = []
        for k in range(len(findings)):
            cell = "1.0" if k in present else "0.0"
            roll = rng.random()
            if k not in present and roll < 0.15:
                cell = "-1.0"
            elif k not in present and roll < 0.3:
                cell = ""
            cells.append(cell)
        sex = "Male" if i % 2 else "Female"
        lines.append(f"patient{i:03d}.png,{sex},{40 + i}," + ",".join(cells))
    table = root / "labels.csv"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return table
