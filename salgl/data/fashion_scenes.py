"""The embedded multi-label dataset: Fashion-MNIST items composed onto scene backgrounds.

Scene context carries information as in real photos: each latent scene favours one of the
appearance-confusable tops (t-shirt/pullover/coat/shirt), one of the confusable shoes
(sandal/sneaker/ankle boot) and one or two other items, and its background style hints at the
scene without giving it away. ``scene_purity`` = 0 removes the label-scene link (the control).
"""

from __future__ import annotations

import colorsys
import functools
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from salgl.atomic import atomic_dir, write_text
from salgl.config import FashionScenesConfig, to_dict
from salgl.data.fashion_mnist import FASHION_LABELS, locate_source, read_split
from salgl.data.prepared import (
    display_path,
    image_root_record,
    write_prepared,
)
from salgl.data.split import carve_validation
from salgl.errors import SalglError

log = logging.getLogger(__name__)

_L = {name: i for i, name in enumerate(FASHION_LABELS)}
TOPS = [_L["t-shirt"], _L["pullover"], _L["coat"], _L["shirt"]]
SHOES = [_L["sandal"], _L["sneaker"], _L["ankle boot"]]
OTHERS = [_L["trouser"], _L["dress"], _L["bag"]]
SCENE_NAMES = ("summer", "autumn", "winter", "office")
# The positive control (structure: latin_matchings): scene s pairs MATCH_TOPS[i] with
# MATCH_PARTNERS[(i + s) % 4]; trouser or dress joins an image with probability DISTRACTOR.
MATCH_TOPS = TOPS
MATCH_PARTNERS = [_L["sandal"], _L["sneaker"], _L["ankle boot"], _L["bag"]]
DISTRACTORS = [_L["trouser"], _L["dress"]]
DISTRACTOR = 0.5
FAVOURED_WEIGHT = 1.0
OTHER_WEIGHT = 0.04
MAX_ITEMS = 10
SPLIT_IDS = {"train": 0, "test": 1}
_BILINEAR = getattr(Image, "Resampling", Image).BILINEAR

# (background hue, saturation, value) of the named scenes; later scenes get spread-out hues.
_NAMED_HSV = ((0.14, 0.45, 0.80), (0.07, 0.55, 0.55), (0.58, 0.25, 0.85), (0.0, 0.0, 0.50))


@dataclass(frozen=True)
class Style:
    """A scene's background look: two colours mixed by a periodic texture."""

    base: tuple[float, float, float]
    stripe: tuple[float, float, float]
    angle: float
    freq: float
    kind: int  # 0 stripes, 1 checks, 2 wavy stripes


@dataclass
class ImagePlan:
    """What one image shows; kept separate from rendering so tests can inspect it."""

    split: str
    scene: int
    style_scene: int
    items: list[int]  # indices into the split's Fashion-MNIST arrays
    classes: list[int]

    @property
    def labels(self) -> list[int]:
        return sorted(set(self.classes))


def scene_name(k: int) -> str:
    return SCENE_NAMES[k] if k < len(SCENE_NAMES) else f"scene_{k}"


def scene_favoured(k: int) -> list[int]:
    """Classes scene ``k`` favours: a top, a shoe, one other, and a second other when k is odd."""
    favoured = [TOPS[k % len(TOPS)], SHOES[k % len(SHOES)], OTHERS[(k + 1) % len(OTHERS)]]
    if k % 2 == 1:
        favoured.append(OTHERS[(k + 2) % len(OTHERS)])
    return favoured


def scene_distributions(num_scenes: int, purity: float) -> np.ndarray:
    """(scenes, classes) label distributions: purity * scene's own + (1 - purity) * uniform."""
    n = len(FASHION_LABELS)
    dists = np.full((num_scenes, n), OTHER_WEIGHT)
    for k in range(num_scenes):
        dists[k, scene_favoured(k)] = FAVOURED_WEIGHT
    dists /= dists.sum(axis=1, keepdims=True)
    return purity * dists + (1.0 - purity) / n


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r, 4), round(g, 4), round(b, 4))


def scene_style(k: int) -> Style:
    """Deterministic style of scene ``k`` (independent of the seed, like the label design)."""
    h, s, v = _NAMED_HSV[k] if k < len(_NAMED_HSV) else ((0.3 + 0.618034 * k) % 1.0, 0.4, 0.65)
    return Style(base=_hsv(h, s, v), stripe=_hsv(h + 0.04, s + 0.1, v - 0.12),
                 angle=round((k * 0.9) % np.pi, 4), freq=3.0 + 2.0 * (k % 3), kind=k % 3)


def _texture(kind: int, u: np.ndarray, v: np.ndarray, freq: float, phase: float) -> np.ndarray:
    """Periodic pattern in 0..1 along rotated coordinates u, v."""
    wave = np.sin(2 * np.pi * freq * u + phase)
    if kind == 1:
        wave = wave * np.sin(2 * np.pi * freq * v + phase)
    elif kind == 2:
        wave = np.sin(2 * np.pi * freq * u + 1.5 * np.sin(2 * np.pi * 1.5 * v) + phase)
    return 0.5 + 0.5 * wave


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> np.ndarray:
    """Pixel coordinates in 0..1 (rows, columns), computed once per image size."""
    grid = (np.mgrid[0:size, 0:size] / size).astype(np.float32)
    grid.flags.writeable = False
    return grid


def render_background(style: Style, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float image in the style, with per-image colour and texture jitter."""
    base = np.clip(np.asarray(style.base) + rng.normal(0.0, 0.07, 3), 0.0, 1.0)
    stripe = np.clip(np.asarray(style.stripe) + rng.normal(0.0, 0.07, 3), 0.0, 1.0)
    angle = style.angle + rng.normal(0.0, 0.25)
    freq = style.freq * rng.uniform(0.8, 1.25)
    phase = rng.uniform(0.0, 2 * np.pi)
    y, x = _grid(size)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    t = 0.6 * _texture(style.kind, u, v, freq, phase)[..., None]
    return (base + (stripe - base) * t).astype(np.float32)


def _class_pools(labels: np.ndarray, split: str, folder: Path) -> list[np.ndarray]:
    """Indices of each class's items; every class must exist so every scene can be drawn."""
    pools = [np.flatnonzero(labels == c) for c in range(len(FASHION_LABELS))]
    for c, pool in enumerate(pools):
        if len(pool) == 0:
            raise SalglError(f"{folder}: the {split} split has no {FASHION_LABELS[c]!r} items")
    return pools


def matched_classes(scene: int, purity: float, rng: np.random.Generator) -> list[int]:
    """The positive control's classes: two distinct tops, each with its scene's partner (with
    probability ``purity``, else a partner drawn uniformly), maybe one distractor."""
    tops = [int(t) for t in rng.choice(len(MATCH_TOPS), size=2, replace=False)]
    partners = [(t + scene) % 4 if rng.random() < purity else int(rng.integers(4))
                for t in tops]
    classes = [MATCH_TOPS[t] for t in tops]
    classes += list(dict.fromkeys(MATCH_PARTNERS[p] for p in partners))
    if rng.random() < DISTRACTOR:
        classes.append(DISTRACTORS[int(rng.integers(len(DISTRACTORS)))])
    return classes


def plan_image(cfg: FashionScenesConfig, split: str, dists: np.ndarray,
               pools: Sequence[np.ndarray], rng: np.random.Generator) -> ImagePlan:
    """Draw a scene, its background style and the items (distinct classes, so they co-occur)."""
    scene = int(rng.integers(cfg.num_scenes))
    match = rng.random() < cfg.background_match
    style_scene = scene if match else int(rng.integers(cfg.num_scenes))
    if cfg.structure == "latin_matchings":
        classes = matched_classes(scene, cfg.scene_purity, rng)
    else:
        count = min(int(rng.integers(cfg.items_min, cfg.items_max + 1)), MAX_ITEMS)
        classes = [int(c) for c in rng.choice(len(FASHION_LABELS), size=count, replace=False,
                                              p=dists[scene])]
    items = [int(pools[c][rng.integers(len(pools[c]))]) for c in classes]
    return ImagePlan(split=split, scene=scene, style_scene=style_scene, items=items,
                     classes=classes)


def _tint(rng: np.random.Generator) -> np.ndarray:
    return np.asarray(_hsv(rng.random(), rng.uniform(0.1, 0.75), rng.uniform(0.55, 1.0)))


def _occlude(canvas: np.ndarray, background: np.ndarray, box: tuple[int, int, int],
             rng: np.random.Generator) -> None:
    """Cover 20-45% of the item box with background or noise, as clutter in a photo would."""
    x, y, side = box
    frac = rng.uniform(0.2, 0.45)
    ratio = np.exp(rng.uniform(-0.5, 0.5))
    fw = min(1.0, float(np.sqrt(frac * ratio)))
    fh = min(1.0, frac / fw)
    w, h = max(1, round(fw * side)), max(1, round(fh * side))
    x0 = x + int(rng.integers(side - w + 1))
    y0 = y + int(rng.integers(side - h + 1))
    if rng.random() < 0.5:
        canvas[y0:y0 + h, x0:x0 + w] = background[y0:y0 + h, x0:x0 + w]
    else:
        colour = rng.uniform(0.2, 0.8, 3)
        canvas[y0:y0 + h, x0:x0 + w] = np.clip(colour + rng.normal(0, 0.12, (h, w, 3)), 0, 1)


def _place(cell: int, side: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner near the centre of quadrant ``cell``: items overlap, but rarely hide."""
    centre = np.array([0.25 + 0.5 * (cell % 2), 0.25 + 0.5 * (cell // 2 % 2)])
    centre += rng.uniform(-0.15, 0.15, 2)
    x, y = np.clip(np.round(centre * size - side / 2), 0, size - side).astype(int)
    return int(x), int(y)


def _draw_item(canvas: np.ndarray, item: np.ndarray, background: np.ndarray, cell: int,
               cfg: FashionScenesConfig, rng: np.random.Generator) -> None:
    """Alpha-blend one resized, tinted item in its quadrant; maybe occlude part of it."""
    size = cfg.image_size
    side = max(8, round(rng.uniform(0.42, 0.65) * size))
    x, y = _place(cell, side, size, rng)
    small = Image.fromarray(item).resize((side, side), _BILINEAR)
    a = np.asarray(small, dtype=np.float32)[..., None] / 255.0
    alpha = np.clip(a * 1.8, 0.0, 1.0)
    colour = _tint(rng) * (0.35 + 0.65 * a)
    region = canvas[y:y + side, x:x + side]
    region *= 1.0 - alpha
    region += alpha * colour
    if rng.random() < cfg.occlusion:
        _occlude(canvas, background, (x, y, side), rng)


def render_image(plan: ImagePlan, items: np.ndarray, cfg: FashionScenesConfig,
                 rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8 image of ``plan``; ``items`` are its 28x28 item pictures."""
    background = render_background(scene_style(plan.style_scene), cfg.image_size, rng)
    canvas = background.copy()
    cells = rng.permutation(4)
    for i, item in enumerate(items):  # later items cover earlier ones where they overlap
        _draw_item(canvas, item, background, int(cells[i % 4]), cfg, rng)
    if cfg.noise > 0:
        canvas += np.float32(cfg.noise) * rng.standard_normal(canvas.shape, dtype=np.float32)
    return (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _write_png(path: Path, pixels: np.ndarray) -> None:
    """Fixed encoder options so the same pixels always give the same bytes."""
    Image.fromarray(pixels, "RGB").save(path, format="PNG", compress_level=6, optimize=False)


def _make_split(cfg: FashionScenesConfig, split: str, count: int, folder: Path, tmp: Path,
                bar: tqdm) -> list[tuple[ImagePlan, str]]:
    """Plan, render and write one split; returns each plan with its path in the lists
    (relative to the prepared folder's images/)."""
    images, labels = read_split(folder, split)
    pools = _class_pools(labels, split, folder)
    dists = scene_distributions(cfg.num_scenes, cfg.scene_purity)
    rng = np.random.default_rng([cfg.seed, SPLIT_IDS[split]])
    (tmp / "images" / split).mkdir(parents=True)
    done = []
    for i in range(count):
        plan = plan_image(cfg, split, dists, pools, rng)
        pixels = render_image(plan, images[plan.items], cfg, rng)
        _write_png(tmp / "images" / split / f"{i:06d}.png", pixels)
        done.append((plan, f"{split}/{i:06d}.png"))  # relative to the prepared images/
        bar.update(1)
    return done


def _split_counts(done: list[tuple[ImagePlan, str]], num_scenes: int) -> dict:
    label_counts = np.zeros(len(FASHION_LABELS), dtype=np.int64)
    scene_counts = np.zeros(num_scenes, dtype=np.int64)
    for plan, _ in done:
        label_counts[plan.labels] += 1
        scene_counts[plan.scene] += 1
    return {
        "images": len(done),
        "items": sum(len(plan.items) for plan, _ in done),
        "labels": {name: int(n) for name, n in zip(FASHION_LABELS, label_counts, strict=True)},
        "scenes": {scene_name(k): int(n) for k, n in enumerate(scene_counts)},
    }


def _scene_meta(cfg: FashionScenesConfig) -> list[dict]:
    if cfg.structure == "latin_matchings":
        return [{"index": k, "name": scene_name(k),
                 "pairs": {FASHION_LABELS[t]: FASHION_LABELS[MATCH_PARTNERS[(i + k) % 4]]
                           for i, t in enumerate(MATCH_TOPS)},
                 "style": to_dict(scene_style(k))} for k in range(cfg.num_scenes)]
    dists = scene_distributions(cfg.num_scenes, cfg.scene_purity)
    return [{
        "index": k,
        "name": scene_name(k),
        "favoured": [FASHION_LABELS[c] for c in scene_favoured(k)],
        "label_distribution": dict(zip(FASHION_LABELS, np.round(dists[k], 6).tolist(),
                                       strict=True)),
        "style": to_dict(scene_style(k)),
    } for k in range(cfg.num_scenes)]


def _scenes_tsv(done: dict[str, list[tuple[ImagePlan, str]]]) -> str:
    lines = ["image_path\tsplit\tscene_index\tscene_name"]
    for split, rows in done.items():
        lines += [f"{path}\t{split}\t{p.scene}\t{scene_name(p.scene)}" for p, path in rows]
    return "\n".join(lines) + "\n"


def prepare_fashion_scenes(cfg: FashionScenesConfig, out: Path) -> dict:
    """Write the prepared dataset into ``out`` (replaced as a whole) and return its meta."""
    started = time.perf_counter()
    out = Path(out)
    folder = locate_source(cfg.source)
    counts = {"train": cfg.train_images, "test": cfg.test_images}
    done: dict[str, list[tuple[ImagePlan, str]]] = {}
    with atomic_dir(out, "prepared") as tmp:
        with tqdm(total=sum(counts.values()), desc="fashion_scenes", unit="img",
                  file=sys.stderr) as bar:
            for split, count in counts.items():
                done[split] = _make_split(cfg, split, count, folder, tmp, bar)
        # Validation images come out of the training images (the test split stays as is).
        train, val = carve_validation(done["train"], [plan.labels for plan, _ in done["train"]],
                                      len(FASHION_LABELS), cfg.val_fraction, cfg.seed,
                                      "prepare.fashion_scenes.val_fraction")
        done = {"train": train, **({"val": val} if val else {}), "test": done["test"]}
        meta = {
            "dataset": "fashion_scenes",
            "source": folder.as_posix(),
            "config": to_dict(cfg),
            "labels": list(FASHION_LABELS),
            "counts": {split: _split_counts(rows, cfg.num_scenes) for split, rows in done.items()},
            "scenes": _scene_meta(cfg),
            "skipped": [],
            "image_root": image_root_record(out / "images", out),
        }
        lists = {split: [(path, [FASHION_LABELS[c] for c in plan.labels]) for plan, path in rows]
                 for split, rows in done.items()}
        write_prepared(tmp, FASHION_LABELS, lists, meta)
        write_text(tmp / "scenes.tsv", _scenes_tsv(done))
    log.info("fashion_scenes: %d train + %d val + %d test images of %dpx, %d scenes "
             "(purity %.2f) from %s -> %s in %.1f s", len(done["train"]),
             len(done.get("val", [])), len(done["test"]), cfg.image_size, cfg.num_scenes,
             cfg.scene_purity, folder, display_path(out), time.perf_counter() - started)
    return meta
