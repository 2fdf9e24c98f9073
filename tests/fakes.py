"""Small stand-ins the tests write themselves: Fashion-MNIST IDX files, prepared datasets."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from salgl.data import fashion_mnist as fm

TRAIN_VALUE, TEST_VALUE = 200, 100

# The training settings every tiny test run shares: a small backbone cut early, small
# images, a narrow head, no loader workers, and a warm-up that fits a few steps.
TINY_TRAIN = {"backbone": "resnet10t", "backbone_stage": 2, "img_size": 32,
              "attention_dim": 8, "encoder_ffn": 16, "num_workers": 0, "warmup": 0.6}


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    """An IDX file of unsigned bytes, as Fashion-MNIST ships it."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data, mtime=0))
    else:
        path.write_bytes(data)
    return path


def make_source(folder: Path, gz: bool = True, n_train: int = 100, n_test: int = 50) -> Path:
    """Fake Fashion-MNIST: block-shaped items whose intensity tells their split."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, value in (("train", n_train, TRAIN_VALUE), ("test", n_test, TEST_VALUE)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, 6:22, 8:20] = value
        image_name, label_name = fm.idx_names(split)
        write_idx(folder / image_name, images, gz)
        write_idx(folder / label_name, np.arange(n) % 10, gz)
    return folder


def make_prepared(root: Path, labels: list[str], n_train: int = 24, n_test: int = 12,
                  size: int = 32, seed: int = 0, n_val: int = 8) -> Path:
    """A tiny prepared dataset whose label k shows as a bright square in cell k of a grid
    (``n_val`` 0: no validation split, as a dataset prepared without one)."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_text("".join(f"{n}\n" for n in labels), encoding="utf-8")
    cell = size // 4
    for split, count in (("train", n_train), ("val", n_val), ("test", n_test)):
        if count == 0:
            continue
        lines = []
        for i in range(count):
            y = rng.random(len(labels)) < 0.4
            y[i % len(labels)] = True
            pixels = (rng.random((size, size, 3)) * 60).astype(np.uint8)
            for k in np.flatnonzero(y):
                r, c = divmod(int(k) % 16, 4)
                pixels[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = 230
            path = images / f"{split}_{i:03d}.png"
            Image.fromarray(pixels).save(path)
            names = ",".join(labels[k] for k in np.flatnonzero(y))
            lines.append(f"{path}\t{names}\n")
        (root / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    return root


class _TouchOnLoad:
    """Unpickling this object calls Path.touch(marker): proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def write_exploit_pickle(path: Path, marker: Path, key: str = "weight") -> Path:
    """A 'checkpoint' whose plain pickle load would create ``marker``."""
    import pickle

    path.write_bytes(pickle.dumps({key: _TouchOnLoad(marker)}))
    return path
