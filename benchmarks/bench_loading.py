"""Train-time input pipeline speed: JPEG decode + augmentation at the paper's 448 px.

Measures images/s for one process (= per CPU core) and through a DataLoader with the worker
count the trainer picks, on synthetic photo-sized JPEGs (640x480, like MS-COCO).

Run: python benchmarks/bench_loading.py --images 96 --img-size 448
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from salgl.data.dataset import MultiLabelImages, build_transform
from salgl.runtime import loader_workers


def make_jpegs(folder: Path, count: int, seed: int = 0) -> list[str]:
    """Smooth random images compress like photos; pure noise would not."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        small = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((640, 480), Image.BICUBIC)
        path = folder / f"{i:05d}.jpg"
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


def per_core(dataset: MultiLabelImages) -> float:
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return len(dataset) / (time.perf_counter() - start)


def with_loader(dataset: MultiLabelImages, workers: int, batch: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=True)
    start = time.perf_counter()
    for _ in loader:
        pass
    return len(dataset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--img-size", type=int, default=448)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), args.images)
        targets = np.zeros((len(paths), 80), dtype=np.uint8)
        result = {"images": len(paths), "img_size": args.img_size,
                  "cores": len(os.sched_getaffinity(0))}
        for name, train in (("train", True), ("test", False)):
            dataset = MultiLabelImages(paths, targets, build_transform(args.img_size, "imagenet",
                                                                       train))
            result[f"{name}_images_per_s_per_core"] = round(per_core(dataset), 1)
        workers = max(1, loader_workers(torch.device("cuda")))
        dataset = MultiLabelImages(paths, targets, build_transform(args.img_size, "imagenet",
                                                                   True))
        result["loader_workers"] = workers
        result["train_loader_images_per_s"] = round(with_loader(dataset, workers, args.batch), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
