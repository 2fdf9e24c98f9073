"""``salgl predict``: label image files, folders or path lists with a trained model file."""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from salgl.errors import SalglError

log = logging.getLogger("salgl")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


def collect_images(inputs: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files, folders (recursive) and .txt path lists; return images and skipped files."""
    images: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for item in inputs:
        if item.is_dir():
            for path in sorted(p for p in item.rglob("*") if p.is_file()):
                if any(part.startswith(".") for part in path.relative_to(item).parts):
                    continue
                if path.suffix.lower() in IMAGE_EXTENSIONS:
                    images.append(path)
                else:
                    skipped.append((path, "not an image file"))
        elif item.suffix.lower() == ".txt" and item.is_file():
            for line in item.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    images.append(Path(line.strip().split("\t")[0]))
        elif item.exists():
            images.append(item)
        else:
            skipped.append((item, "no such file or folder"))
    return images, skipped


class _ImageFiles(Dataset):
    def __init__(self, paths: list[Path], transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from salgl.data.dataset import open_rgb

        try:
            return index, self.transform(open_rgb(str(self.paths[index]))), None
        except SalglError as exc:
            return index, None, str(exc)


def _collate(batch):
    good = [(i, x) for i, x, err in batch if err is None]
    bad = [(i, err) for i, _, err in batch if err is not None]
    tensors = torch.stack([x for _, x in good]) if good else None
    return [i for i, _ in good], tensors, bad


def predict_batches(model, info, paths: list[Path], batch_size: int, device: torch.device,
                    progress: bool = True) -> Iterator[tuple]:
    """Yield (path, scores, scene_probs) or (path, None, error) per image, in input order."""
    from tqdm import tqdm

    from salgl.evaluate import transform_for
    from salgl.train import default_workers

    loader = DataLoader(_ImageFiles(paths, transform_for(info)), batch_size=batch_size,
                        num_workers=min(default_workers(device), 4), collate_fn=_collate)
    with torch.no_grad(), tqdm(total=len(paths), desc="predict", disable=not progress,
                               file=sys.stderr) as bar:
        for indices, images, bad in loader:
            results: dict[int, tuple] = {i: (paths[i], None, err) for i, err in bad}
            if images is not None:
                out = model(images.to(device))
                scores = torch.sigmoid(out["logits"].float()).cpu().numpy()
                scenes = out["scene_probs"].float().cpu().numpy()
                for row, i in enumerate(indices):
                    results[i] = (paths[i], scores[row], scenes[row])
            for i in sorted(results):
                yield results[i]
            bar.update(len(indices) + len(bad))


def chosen_labels(scores: np.ndarray, labels: list[str], threshold: float,
                  topk: int | None) -> list[str]:
    order = np.argsort(-scores, kind="stable")
    keep = [labels[i] for i in order if scores[i] >= threshold]
    return keep[:topk] if topk else keep


def predict_command(args) -> int:
    from salgl.checkpoint import load_model
    from salgl.train import select_device

    if args.topk is not None and args.topk < 1:
        raise SalglError("--topk: must be at least 1")
    if not 0.0 <= args.threshold <= 1.0:
        raise SalglError("--threshold: must be within [0, 1]")
    device = select_device(args.device)
    model, info = load_model(args.model, device)
    model.set_channels_last()
    images, skipped = collect_images(args.paths)
    for path, reason in skipped:
        print(f"salgl predict: skipped {path}: {reason}", file=sys.stderr)
    if not images:
        where = ", ".join(str(p) for p in args.paths)
        raise SalglError(f"no image files found in {where}")
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    failed = len(skipped)
    try:
        writer = None
        if args.format == "csv":
            writer = csv.writer(out)
            writer.writerow(["path", "labels", "scene", *info.labels])
        for path, scores, scenes in predict_batches(model, info, images, args.batch_size, device,
                                                     progress=not args.quiet):
            if scores is None:
                failed += 1
                print(f"salgl predict: skipped {path}: {scenes}", file=sys.stderr)
                continue
            names = chosen_labels(scores, info.labels, args.threshold, args.topk)
            scene = int(np.argmax(scenes))
            if writer is not None:
                writer.writerow([str(path), ";".join(names), scene,
                                 *(f"{s:.6f}" for s in scores)])
            else:
                named = zip(info.labels, scores, strict=True)
                record = {"path": str(path), "labels": names,
                          "scores": {n: round(float(s), 6) for n, s in named},
                          "scene": scene, "scene_probs": [round(float(p), 6) for p in scenes]}
                out.write(json.dumps(record) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    if failed:
        log.warning("salgl predict: %d of %d inputs could not be labelled", failed,
                    len(images) + len(skipped))
        return 1
    return 0
