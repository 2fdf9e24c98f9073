"""The embedded Fashion-MNIST scenes dataset: determinism, format, scene signal, source errors.

Most tests use a small fake Fashion-MNIST written here, so they run without the system copy and
can mark which split an item came from by its pixel value.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salgl.config import FashionScenesConfig
from salgl.data import fashion_mnist as fm
from salgl.data import fashion_scenes as fs
from salgl.data.prepared import load_prepared
from salgl.errors import SalglError

from fakes import TEST_VALUE, TRAIN_VALUE, make_source

PLAIN_NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat",
               "sandal", "shirt", "sneaker", "bag", "ankle boot"]

@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("fmnist"))


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may download or see the real system copy unless it asks for it."""
    monkeypatch.setenv("SALGL_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)


def small(source: Path | None, **kw) -> FashionScenesConfig:
    settings = dict(image_size=32, train_images=40, test_images=20, seed=0)
    settings.update(kw)
    return FashionScenesConfig(source=str(source) if source else None, **settings)


def image_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "images").rglob("*.png"))}


def columns(path: Path, skip_header: bool = False) -> list[list[str]]:
    """Rows of a tsv with the image path reduced to split/file (the folder differs per run)."""
    lines = path.read_text(encoding="utf-8").splitlines()[int(skip_header):]
    rows = [line.split("\t") for line in lines]
    return [["/".join(r[0].split("/")[-2:])] + r[1:] for r in rows]


def test_same_seed_gives_identical_bytes(source: Path, tmp_path: Path) -> None:
    cfg = small(source)
    a, b = tmp_path / "a" / "out", tmp_path / "b" / "out"
    fs.prepare_fashion_scenes(cfg, a)
    fs.prepare_fashion_scenes(cfg, b)
    hashes = image_hashes(a)
    assert len(hashes) == 60
    assert hashes == image_hashes(b)
    for name in ("labels.txt", "meta.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    for name in ("train.tsv", "test.tsv"):
        assert columns(a / name) == columns(b / name)
    assert columns(a / "scenes.tsv", True) == columns(b / "scenes.tsv", True)


def test_different_seed_gives_different_data(source: Path, tmp_path: Path) -> None:
    fs.prepare_fashion_scenes(small(source, seed=0), tmp_path / "s0")
    fs.prepare_fashion_scenes(small(source, seed=1), tmp_path / "s1")
    h0, h1 = image_hashes(tmp_path / "s0"), image_hashes(tmp_path / "s1")
    assert h0.keys() == h1.keys()
    assert sum(h0[k] != h1[k] for k in h0) >= 55
    assert columns(tmp_path / "s0" / "train.tsv") != columns(tmp_path / "s1" / "train.tsv")


def test_output_loads_as_prepared_dataset(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "data" / "prepared" / "fashion_scenes"
    meta = fs.prepare_fashion_scenes(small(source), out)
    data = load_prepared(out)
    assert data.labels == PLAIN_NAMES == list(fm.FASHION_LABELS)
    assert (len(data.train), len(data.val), len(data.test)) == (36, 4, 20)  # val: 10% of 40
    assert not set(data.train.paths) & set(data.val.paths)
    assert (data.val.targets.sum(0) > 0).sum() >= 5  # stratified: many labels in 4 images
    for split in (data.train, data.val, data.test):
        per_image = split.targets.sum(axis=1)
        assert per_image.min() >= 2 and per_image.max() <= 4  # 2..4 items of distinct classes
    # paths are relative to the prepared folder's images/, so the folder travels whole
    first = (out / "train.tsv").read_text().splitlines()[0].split("\t")[0]
    assert first == "train/000000.png"
    assert meta["image_root"] == {"path": "images", "relative_to": "prepared"}
    assert data.train.paths[0] == str(out / "images" / "train" / "000000.png")
    with Image.open(data.test.paths[-1]) as im:
        assert (im.mode, im.size) == ("RGB", (32, 32))
    assert meta["skipped"] == [] and meta["counts"]["train"]["images"] == 36
    assert meta["counts"]["val"]["images"] == 4
    assert sum(meta["counts"]["test"]["labels"].values()) == int(data.test.targets.sum())
    assert [s["name"] for s in meta["scenes"]] == ["summer", "autumn", "winter", "office"]
    header = (out / "scenes.tsv").read_text().splitlines()[0]
    assert header == "image_path\tsplit\tscene_index\tscene_name"
    assert not list(tmp_path.rglob(".fashion_scenes.*"))  # no temporary folder left


def test_items_come_from_their_own_split(source: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, set[int]] = {"train": set(), "test": set()}
    real = fs.render_image

    def spy(plan, items, cfg, rng):
        seen[plan.split].update(np.unique(items).tolist())
        return real(plan, items, cfg, rng)

    monkeypatch.setattr(fs, "render_image", spy)
    fs.prepare_fashion_scenes(small(source), tmp_path / "out")
    assert seen == {"train": {0, TRAIN_VALUE}, "test": {0, TEST_VALUE}}


def scene_label_distributions(out: Path) -> np.ndarray:
    """(scenes, labels) label frequencies of the training images, from scenes.tsv + train.tsv."""
    data = load_prepared(out)
    rows = [line.split("\t") for line in (out / "scenes.tsv").read_text().splitlines()[1:]]
    scenes = np.array([int(r[2]) for r in rows if r[1] == "train"])
    counts = np.stack([data.train.targets[scenes == k].sum(axis=0) for k in range(4)])
    return counts / counts.sum(axis=1, keepdims=True)


def pairwise_tv(dists: np.ndarray) -> list[float]:
    n = len(dists)
    return [0.5 * float(np.abs(dists[a] - dists[b]).sum())
            for a in range(n) for b in range(a + 1, n)]


def test_scene_purity_controls_label_scene_link(source: Path, tmp_path: Path) -> None:
    kw = dict(train_images=400, test_images=1, noise=0.0)
    fs.prepare_fashion_scenes(small(source, scene_purity=0.95, **kw), tmp_path / "pure")
    fs.prepare_fashion_scenes(small(source, scene_purity=0.0, **kw), tmp_path / "control")
    pure = scene_label_distributions(tmp_path / "pure")
    control = scene_label_distributions(tmp_path / "control")
    assert min(pairwise_tv(pure)) > 0.3
    assert max(pairwise_tv(control)) < 0.2
    tops = [PLAIN_NAMES.index(n) for n in ("t-shirt", "pullover", "coat", "shirt")]
    favourite_top = [tops[int(np.argmax(pure[k, tops]))] for k in range(4)]
    assert favourite_top == tops  # scene k's confusable top is the one its context favours


def test_no_source_names_all_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SALGL_FASHION_MNIST_SYSTEM_DIR", str(empty))
    out = tmp_path / "out"
    with pytest.raises(SalglError) as err:
        fs.prepare_fashion_scenes(small(None), out)
    message = str(err.value)
    for place in ("prepare.fashion_scenes.source", str(empty), "data/raw/fashion-mnist",
                  "apt-get install dataset-fashion-mnist"):
        assert place in message
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_missing_configured_source_names_key(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SalglError, match=r"prepare\.fashion_scenes\.source") as err:
        fs.prepare_fashion_scenes(small(missing), tmp_path / "out")
    assert str(missing) in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_names_file(tmp_path: Path, gz: bool) -> None:
    folder = make_source(tmp_path / "src", gz=gz)
    suffix = ".gz" if gz else ""
    broken = folder / f"train-images-idx3-ubyte{suffix}"
    broken.write_bytes(broken.read_bytes()[: len(broken.read_bytes()) // 2])
    with pytest.raises(SalglError, match="train-images-idx3-ubyte") as err:
        fs.prepare_fashion_scenes(small(folder), tmp_path / "out")
    assert str(broken) in str(err.value)
    assert not (tmp_path / "out").exists()


def test_bad_magic_names_file(tmp_path: Path) -> None:
    folder = make_source(tmp_path / "src", gz=False)
    labels = folder / "t10k-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x08\x03" + labels.read_bytes()[4:])
    with pytest.raises(SalglError, match="magic") as err:
        fm.read_split(folder, "test")
    assert str(labels) in str(err.value)


def test_torchvision_layout_and_plain_files(tmp_path: Path) -> None:
    raw = make_source(tmp_path / "tv" / "FashionMNIST" / "raw", gz=False, n_train=30, n_test=20)
    assert fm.find_source(str(tmp_path / "tv")) == raw
    images, labels = fm.read_split(fm.locate_source(str(tmp_path / "tv")), "test")
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [i % 10 for i in range(20)]


def test_failure_leaves_old_output_alone_and_success_replaces_it(
        source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "ignore.npy").write_text("old")  # a name salgl writes: an earlier output

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    real = fs.render_image
    monkeypatch.setattr(fs, "render_image", boom)
    with pytest.raises(RuntimeError):
        fs.prepare_fashion_scenes(small(source), out)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left
    monkeypatch.setattr(fs, "render_image", real)
    fs.prepare_fashion_scenes(small(source), out)
    assert not (out / "ignore.npy").exists() and (out / "labels.txt").exists()


def test_real_fashion_mnist_if_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SALGL_FASHION_MNIST_SYSTEM_DIR", raising=False)
    if fm.dataset_folder(fm.system_dir()) is None:
        pytest.skip("dataset-fashion-mnist is not installed")
    images, labels = fm.read_split(fm.locate_source(None), "test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.bincount(labels).tolist() == [1000] * 10


def test_scene_design_favours_confusable_groups() -> None:
    names = [[PLAIN_NAMES[c] for c in fs.scene_favoured(k)] for k in range(4)]
    assert names == [["t-shirt", "sandal", "dress"],
                     ["pullover", "sneaker", "bag", "trouser"],
                     ["coat", "ankle boot", "trouser"],
                     ["shirt", "sandal", "dress", "bag"]]
    dists = fs.scene_distributions(6, 0.0)
    assert np.allclose(dists, 0.1)
    assert np.allclose(fs.scene_distributions(6, 1.0).sum(axis=1), 1.0)


def test_background_hints_at_scene_without_giving_it_away(
        source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs: list[tuple[int, int]] = []
    real = fs.render_image

    def spy(plan, items, cfg, rng):
        pairs.append((plan.scene, plan.style_scene))
        return real(plan, items, cfg, rng)

    monkeypatch.setattr(fs, "render_image", spy)
    fs.prepare_fashion_scenes(small(source, train_images=300, background_match=0.6), tmp_path / "o")
    match = np.mean([scene == style for scene, style in pairs])
    assert 0.6 < match < 0.8  # 0.6 own style + 0.4 * 1/4 by chance
    rng = np.random.default_rng(0)
    means = np.array([[fs.render_background(fs.scene_style(k), 32, rng).mean(axis=(0, 1))
                       for _ in range(20)] for k in range(4)])  # scenes x renderings x RGB
    centres = means.mean(axis=1)
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(4) for b in range(a + 1, 4)]
    assert min(gaps) > 0.1  # each scene has its own look
    assert means.std(axis=1).min() > 0.02  # with per-image jitter
