"""Preparers of MS-COCO 2014, VOC 2007 and NUS-WIDE: exact output on tiny raw copies, and
one clear error (with ``out`` untouched) for every kind of bad input."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from raw_fixtures import (
    NOT_AN_IMAGE,
    make_coco,
    make_nuswide,
    make_voc,
    truncated_jpeg_bytes,
    write_jpeg,
)

from salgl.data.coco import prepare_mscoco
from salgl.data.images import check_images
from salgl.data.nuswide import prepare_nuswide
from salgl.data.prepared import load_prepared
from salgl.data.real import PREPARERS, prepare_real
from salgl.data.voc import VOC_CLASSES, prepare_voc2007
from salgl.errors import SalglError
from salgl.output_rules import MARKER

CANNOT_READ = "cannot decode: not an image format PIL can read"
COCO_TRAIN = "coco/train2014/COCO_train2014_0000000000"
COCO_VAL = "coco/val2014/COCO_val2014_0000000000"


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Written image paths are relative to the working directory: make it tmp_path."""
    monkeypatch.chdir(tmp_path)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")


def read_meta(out: Path) -> dict:
    return json.loads((out / "meta.json").read_text(encoding="utf-8"))


def fails(call: Callable[[], object], out: Path, *fragments: str) -> str:
    """``call`` raises one-line SalglError naming every fragment, and leaves no ``out``."""
    with pytest.raises(SalglError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message
    assert not out.exists()
    return message


# --- the image check ------------------------------------------------------------------------

def test_check_images_finds_missing_and_undecodable(tmp_path: Path) -> None:
    good_jpeg = write_jpeg(tmp_path / "good.jpg", seed=1, size=200)
    good_png = tmp_path / "good.png"
    Image.new("RGB", (10, 10), (1, 2, 3)).save(good_png)
    corrupt, truncated = tmp_path / "corrupt.jpg", tmp_path / "truncated.jpg"
    corrupt.write_bytes(NOT_AN_IMAGE)
    truncated.write_bytes(truncated_jpeg_bytes())
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    paths = [good_jpeg, tmp_path / "absent.jpg", corrupt, good_png, truncated, empty, folder]
    for workers in (1, 3):
        found = check_images(paths, workers=workers, progress=False)
        assert set(found) == {tmp_path / "absent.jpg", corrupt, truncated, empty, folder}
        assert found[tmp_path / "absent.jpg"] == "missing"
        assert found[folder] == "missing"
        assert found[corrupt] == CANNOT_READ
        assert found[truncated].startswith("cannot decode: image file is truncated")


def test_check_images_shows_progress_on_stderr(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    paths = [write_jpeg(tmp_path / f"{i}.jpg", seed=i) for i in range(40)]
    assert check_images(paths, progress=True) == {}
    captured = capsys.readouterr()
    assert "checking images" in captured.err and "40/40" in captured.err
    assert captured.out == ""
    check_images(paths, progress=False)
    assert capsys.readouterr().err == ""


# --- MS-COCO 2014 ---------------------------------------------------------------------------

def test_coco_prepared_exactly(tmp_path: Path) -> None:
    raw = make_coco(tmp_path / "coco")
    meta = prepare_mscoco(raw, tmp_path / "out", progress=False)
    out = tmp_path / "out"
    assert lines(out / "labels.txt") == ["person", "traffic light", "zebra", ""]
    train, test = COCO_TRAIN.removeprefix("coco/"), COCO_VAL.removeprefix("coco/")
    assert lines(out / "train.tsv") == [f"{train}10.jpg\tperson,zebra",  # relative to raw
                                        f"{train}11.jpg\ttraffic light",
                                        f"{train}14.jpg\tzebra", ""]
    assert lines(out / "test.tsv") == [f"{test}20.jpg\ttraffic light,zebra",
                                       f"{test}22.jpg\tperson", ""]
    assert not (out / "ignore.npy").exists()
    assert read_meta(out) == meta
    assert meta["dataset"] == "mscoco" and meta["source"] == raw.as_posix()
    assert meta["counts"] == {
        "train": {"images": 3, "dropped_without_labels": 1, "skipped_broken": 1},
        "test": {"images": 2, "dropped_without_labels": 1, "skipped_broken": 2}}
    assert meta["label_counts"] == {"train": {"person": 1, "traffic light": 1, "zebra": 2},
                                    "test": {"person": 1, "traffic light": 1, "zebra": 1}}
    assert meta["dropped"] == [
        {"path": f"{COCO_TRAIN}12.jpg", "split": "train", "reason": "no annotations"},
        {"path": f"{COCO_VAL}23.jpg", "split": "test", "reason": "no annotations"}]
    skipped = meta["skipped"]
    assert [(s["path"], s["split"]) for s in skipped] == [
        (f"{COCO_TRAIN}13.jpg", "train"), (f"{COCO_VAL}21.jpg", "test"),
        (f"{COCO_VAL}24.jpg", "test")]
    assert skipped[0]["reason"] == "missing" and skipped[1]["reason"] == CANNOT_READ
    assert skipped[2]["reason"].startswith("cannot decode: image file is truncated")
    assert meta["standard_counts"] == {"train": 82081, "test": 40137}
    assert meta["summary"].startswith("mscoco: 3 train + 2 test images, 3 labels; dropped 2 "
                                      "without labels; skipped 3 unreadable (1 missing, 2 "
                                      "cannot decode)")
    data = load_prepared(out)
    assert data.train.targets.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]
    assert all(Path(p).is_file() for p in data.train.paths + data.test.paths)


def test_an_image_root_outside_the_working_directory_is_absolute(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_coco(tmp_path / "coco")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    prepare_mscoco(raw, tmp_path / "out", progress=False)
    first = lines(tmp_path / "out" / "train.tsv")[0]
    assert first == "train2014/COCO_train2014_000000000010.jpg\tperson,zebra"
    assert read_meta(tmp_path / "out")["image_root"] == {
        "path": raw.resolve().as_posix(), "relative_to": "absolute"}
    data = load_prepared(tmp_path / "out")
    assert data.train.paths[0] == str(raw.resolve() / "train2014" /
                                      "COCO_train2014_000000000010.jpg")


def test_coco_wrong_layout_names_every_missing_entry(tmp_path: Path) -> None:
    raw = make_voc(tmp_path / "voc")
    fails(lambda: prepare_mscoco(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{raw}: not an MS-COCO 2014 folder: missing annotations/instances_train2014.json, "
          "annotations/instances_val2014.json, train2014/, val2014/")


def test_coco_missing_annotation_file(tmp_path: Path) -> None:
    raw = make_coco(tmp_path / "coco")
    (raw / "annotations/instances_val2014.json").unlink()
    fails(lambda: prepare_mscoco(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{raw}: not an MS-COCO 2014 folder: missing annotations/instances_val2014.json")


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_coco_json_without_categories(tmp_path: Path) -> None:
    raw = make_coco(tmp_path / "coco")
    path = raw / "annotations/instances_train2014.json"
    _edit_json(path, lambda d: d.pop("categories"))
    fails(lambda: prepare_mscoco(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{path}: no 'categories' list")


def test_coco_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    raw = make_coco(tmp_path / "coco")
    path = raw / "annotations/instances_val2014.json"
    path.write_text('{\n  "images": [\n  oops\n', encoding="utf-8")
    fails(lambda: prepare_mscoco(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{path}:3: not valid JSON")


def test_coco_val_categories_must_match_train(tmp_path: Path) -> None:
    raw = make_coco(tmp_path / "coco")
    path = raw / "annotations/instances_val2014.json"
    _edit_json(path, lambda d: d["categories"][0].update(name="horse"))
    fails(lambda: prepare_mscoco(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{path}: categories differ from", "(id 3: 'horse' here, 'traffic light' there)")


def test_coco_annotation_with_unknown_category(tmp_path: Path) -> None:
    raw = make_coco(tmp_path / "coco")
    path = raw / "annotations/instances_train2014.json"
    _edit_json(path, lambda d: d["annotations"][1].update(category_id=99))
    fails(lambda: prepare_mscoco(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{path}: annotations[1] has category_id 99")


# --- PASCAL VOC 2007 ------------------------------------------------------------------------

def test_voc_prepared_exactly(tmp_path: Path) -> None:
    raw = make_voc(tmp_path / "voc")
    meta = prepare_voc2007(raw, tmp_path / "out", progress=False)
    out = tmp_path / "out"
    assert lines(out / "labels.txt") == list(VOC_CLASSES) + [""]
    assert VOC_CLASSES == tuple(sorted(VOC_CLASSES)) and len(VOC_CLASSES) == 20
    assert lines(out / "train.tsv") == ["JPEGImages/000001.jpg\tdog,person",
                                        "JPEGImages/000002.jpg\tcat", ""]
    assert lines(out / "test.tsv") == ["JPEGImages/000004.jpg\tcar",
                                       "JPEGImages/000005.jpeg\ttvmonitor",
                                       "JPEGImages/000007.jpg\t", ""]
    ignore = np.load(out / "ignore.npy")
    assert ignore.dtype == np.uint8 and ignore.shape == (3, 20)
    expected = np.zeros((3, 20), dtype=np.uint8)
    for row, name in ((0, "bicycle"), (1, "sofa"), (2, "person")):
        expected[row, VOC_CLASSES.index(name)] = 1
    assert np.array_equal(ignore, expected)
    assert read_meta(out) == meta
    assert meta["counts"] == {
        "train": {"images": 2, "dropped_without_labels": 0, "skipped_broken": 1},
        "test": {"images": 3, "dropped_without_labels": 0, "skipped_broken": 1}}
    nonzero = {split: {k: v for k, v in counts.items() if v}
               for split, counts in meta["label_counts"].items()}
    assert nonzero == {"train": {"cat": 1, "dog": 1, "person": 1},
                       "test": {"car": 1, "tvmonitor": 1}}
    assert {k: v for k, v in meta["ignored_pairs"].items() if v} == {
        "bicycle": 1, "person": 1, "sofa": 1}
    assert meta["skipped"] == [
        {"path": "voc/JPEGImages/000003.jpg", "split": "train", "reason": "missing"},
        {"path": "voc/JPEGImages/000006.jpg", "split": "test", "reason": CANNOT_READ}]
    assert meta["dropped"] == []
    assert meta["standard_counts"] == {"train": 5011, "test": 4952}
    data = load_prepared(out)
    assert np.array_equal(data.ignore, expected)
    assert not (data.test.targets.astype(bool) & data.ignore.astype(bool)).any()


def test_voc_wrong_layout_hints_at_the_nested_folder(tmp_path: Path) -> None:
    make_voc(tmp_path / "VOCdevkit" / "VOC2007")
    raw = tmp_path / "VOCdevkit"
    fails(lambda: prepare_voc2007(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{raw}: not a PASCAL VOC 2007 folder: missing Annotations/, JPEGImages/, "
          "ImageSets/Main/trainval.txt, ImageSets/Main/test.txt",
          f"did you mean {raw / 'VOC2007'}?")


def test_voc_missing_annotation_file(tmp_path: Path) -> None:
    raw = make_voc(tmp_path / "voc")
    (raw / "Annotations/000002.xml").unlink()
    fails(lambda: prepare_voc2007(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{raw / 'Annotations/000002.xml'}: missing annotation file")


def test_voc_xml_without_objects(tmp_path: Path) -> None:
    raw = make_voc(tmp_path / "voc")
    path = raw / "Annotations/000005.xml"
    path.write_text("<annotation><filename>000005.jpg</filename></annotation>\n")
    fails(lambda: prepare_voc2007(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{path}: no <object> elements")


def test_voc_unknown_class_name(tmp_path: Path) -> None:
    raw = make_voc(tmp_path / "voc")
    path = raw / "Annotations/000004.xml"
    path.write_text(path.read_text().replace("bicycle", "unicorn"))
    fails(lambda: prepare_voc2007(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{path}: unknown class name 'unicorn'")


def test_voc_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    raw = make_voc(tmp_path / "voc")
    path = raw / "Annotations/000001.xml"
    path.write_text("<annotation>\n<object>\n</annotation>\n")
    fails(lambda: prepare_voc2007(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{path}:3: not valid XML")


# --- NUS-WIDE -------------------------------------------------------------------------------

def test_nuswide_prepared_exactly(tmp_path: Path) -> None:
    raw = make_nuswide(tmp_path / "nus")
    meta = prepare_nuswide(raw, tmp_path / "out", progress=False)
    out = tmp_path / "out"
    assert lines(out / "labels.txt") == ["animal", "beach", "clouds", "sky", ""]
    assert lines(out / "train.tsv") == ["Flickr/actor/0001_2124494179.jpg\tanimal,sky",
                                        "Flickr/actor/0007_3050505050.jpg\tclouds", ""]
    assert lines(out / "test.tsv") == ["Flickr/beach/0002_2232400321.jpg\tbeach",
                                       "Flickr/beach/0006_1234567890.jpg\tbeach,clouds,sky",
                                       ""]
    assert not (out / "ignore.npy").exists()
    assert read_meta(out) == meta
    assert meta["counts"] == {
        "train": {"images": 2, "dropped_without_labels": 1, "skipped_broken": 1},
        "test": {"images": 2, "dropped_without_labels": 0, "skipped_broken": 1}}
    assert meta["label_counts"] == {
        "train": {"animal": 1, "beach": 0, "clouds": 1, "sky": 1},
        "test": {"animal": 0, "beach": 2, "clouds": 1, "sky": 1}}
    assert meta["dropped"] == [{"path": "nus/Flickr/sky/0003_1211003051.jpg", "split": "train",
                                "reason": "no positive label"}]
    assert meta["skipped"] == [
        {"path": "nus/Flickr/animal/0005_2401244312.jpg", "split": "train",
         "reason": CANNOT_READ},
        {"path": "nus/Flickr/sky/0004_2370339281.jpg", "split": "test", "reason": "missing"}]
    assert meta["standard_counts"] is None and meta["images_in_no_split"] == 0


def test_nuswide_label_file_with_wrong_line_count(tmp_path: Path) -> None:
    raw = make_nuswide(tmp_path / "nus")
    path = raw / "Groundtruth/AllLabels/Labels_clouds.txt"
    path.write_bytes(path.read_bytes() + b"0\r\n")
    fails(lambda: prepare_nuswide(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{path}: 8 lines, but {raw / 'ImageList/Imagelist.txt'} has 7")


def test_nuswide_label_value_not_binary(tmp_path: Path) -> None:
    raw = make_nuswide(tmp_path / "nus")
    path = raw / "Groundtruth/AllLabels/Labels_sky.txt"
    values = path.read_bytes().split(b"\r\n")
    values[2] = b"2"
    path.write_bytes(b"\r\n".join(values))
    fails(lambda: prepare_nuswide(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{path}:3: expected 0 or 1, found '2'")


def test_nuswide_missing_label_file(tmp_path: Path) -> None:
    raw = make_nuswide(tmp_path / "nus")
    path = raw / "Groundtruth/AllLabels/Labels_beach.txt"
    path.unlink()
    fails(lambda: prepare_nuswide(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{path}: missing label file")


def test_nuswide_split_entry_not_in_image_list(tmp_path: Path) -> None:
    raw = make_nuswide(tmp_path / "nus")
    path = raw / "ImageList/TestImagelist.txt"
    path.write_bytes(path.read_bytes() + b"C:\\ImageData\\Flickr\\zoo\\0099_1.jpg\r\n")
    fails(lambda: prepare_nuswide(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{path}:4: zoo/0099_1.jpg is not in ImageList/Imagelist.txt")


def test_nuswide_wrong_layout(tmp_path: Path) -> None:
    raw = make_coco(tmp_path / "coco")
    fails(lambda: prepare_nuswide(raw, tmp_path / "out", progress=False), tmp_path / "out",
          f"{raw}: not a NUS-WIDE folder: missing Flickr/, Groundtruth/AllLabels/, "
          "Concepts81.txt, ImageList/Imagelist.txt")


# --- all three ------------------------------------------------------------------------------

MAKERS = {"mscoco": make_coco, "voc2007": make_voc, "nuswide": make_nuswide}
FIRST_BAD = {"mscoco": (f"{COCO_TRAIN}13.jpg: missing", 3),
             "voc2007": ("voc/JPEGImages/000003.jpg: missing", 2),
             "nuswide": (f"nus/Flickr/animal/0005_2401244312.jpg: {CANNOT_READ}", 2)}
FOLDERS = {"mscoco": "coco", "voc2007": "voc", "nuswide": "nus"}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_strict_refuses_the_first_bad_image(name: str, tmp_path: Path) -> None:
    raw = MAKERS[name](tmp_path / FOLDERS[name])
    first, count = FIRST_BAD[name]
    message = fails(lambda: PREPARERS[name](raw, tmp_path / "out", strict=True, progress=False),
                    tmp_path / "out", first, f"{count} missing or broken image(s)")
    assert message.startswith(first)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_failure_leaves_an_existing_out_unchanged(name: str, tmp_path: Path) -> None:
    raw = MAKERS[name](tmp_path / FOLDERS[name])
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels.txt").write_text("old\n")
    with pytest.raises(SalglError):
        PREPARERS[name](raw, out, strict=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["labels.txt"]
    assert (out / "labels.txt").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([FOLDERS[name], "out"])


def test_success_replaces_out_as_a_whole(tmp_path: Path) -> None:
    raw = make_voc(tmp_path / "voc")
    out = tmp_path / "out"
    out.mkdir()
    (out / "scenes.tsv").write_text("stale\n")
    prepare_real("voc2007", raw, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        MARKER, "ignore.npy", "labels.txt", "meta.json", "test.tsv", "train.tsv"]


def test_prepare_real_dispatches_and_checks_raw(tmp_path: Path) -> None:
    assert set(PREPARERS) == {"mscoco", "voc2007", "nuswide"}
    raw = make_nuswide(tmp_path / "nus")
    meta = prepare_real("nuswide", raw, tmp_path / "a", progress=False)
    assert meta == prepare_nuswide(raw, tmp_path / "b", progress=False)
    assert (tmp_path / "a" / "train.tsv").read_text() == (tmp_path / "b" / "train.tsv").read_text()
    fails(lambda: prepare_real("mscoco", tmp_path / "nowhere", tmp_path / "out"),
          tmp_path / "out", f"{tmp_path / 'nowhere'}: raw dataset folder not found (set "
          "prepare.mscoco.raw in params.yaml or pass --raw)")
    fails(lambda: prepare_real("imagenet", raw, tmp_path / "out"), tmp_path / "out",
          "'imagenet'")
    shutil.rmtree(tmp_path / "b")


def test_validation_is_carved_from_the_training_split(tmp_path: Path) -> None:
    """val.tsv comes out of MS-COCO's train2014 list; the test split stays as it was."""
    raw = make_coco(tmp_path / "coco")
    prepare_mscoco(raw, tmp_path / "whole", progress=False)
    whole = load_prepared(tmp_path / "whole")
    assert whole.val is None  # val_fraction 0: no validation split
    meta = prepare_mscoco(raw, tmp_path / "carved", progress=False, val_fraction=0.34, seed=3)
    carved = load_prepared(tmp_path / "carved")
    assert carved.val is not None and len(carved.val) == 1 and len(carved.train) == 2
    assert sorted(carved.train.paths + carved.val.paths) == sorted(whole.train.paths)
    assert carved.test.paths == whole.test.paths
    assert meta["counts"]["val"]["images"] == 1
    assert meta["summary"].startswith("mscoco: 2 train + 1 val + 2 test images")
    again = prepare_mscoco(raw, tmp_path / "again", progress=False, val_fraction=0.34, seed=3)
    assert again["counts"] == meta["counts"]
    assert (tmp_path / "again" / "val.tsv").read_text() == (
        tmp_path / "carved" / "val.tsv").read_text()
