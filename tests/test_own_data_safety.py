"""Own-data annotations from elsewhere touch nothing outside the images folder they name, and
prepare writes only what the next stages can read (issue 20).

Every refused input goes through the real command line and must give exit 2, one line naming
the annotation file and its row (or image id), no output folder and no change anywhere under
the test's folder.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from tree_snapshot import changes, tree_snapshot

from salgl.data.prepared import (
    check_list_entries,
    load_prepared,
    read_labels,
    unlistable_character,
    write_prepared,
)
from salgl.errors import SalglError, shown

from own_fixtures import draw

IMAGES = 12  # a1..a11 alternate cat/dog: enough for the stratified train/val/test split


def image_folder(root: Path) -> Path:
    for i in range(IMAGES):
        draw(root / "imgs" / f"a{i}.png", [i % 2], i)
    return root / "imgs"


def outside_image(root: Path) -> Path:
    """A decodable image the test owns, beside (not inside) the images folder."""
    return draw(root / "elsewhere" / "photo.png", [0], 99)


def tag_table(root: Path, extra: list[str], name: str = "tags.csv") -> Path:
    """image,tags rows for the folder's images, then ``extra`` (rows 14 on)."""
    rows = ["image,tags", *(f"a{i}.png,{'dog' if i % 2 else 'cat'}" for i in range(IMAGES)),
            *extra]
    table = root / name
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return table


def coco_file(root: Path, extra: list[tuple[str, bool]], categories: tuple[str, ...] =
              ("cat", "dog")) -> Path:
    """A COCO export of the folder's images (ids 0..11), then ``extra`` (file_name, annotated)
    as image ids 100, 101, ..."""
    images = [{"id": i, "file_name": f"a{i}.png"} for i in range(IMAGES)]
    annotations = [{"id": i + 1, "image_id": i, "category_id": 1 + i % 2}
                   for i in range(IMAGES)]
    for k, (file_name, annotated) in enumerate(extra):
        images.append({"id": 100 + k, "file_name": file_name})
        if annotated:
            annotations.append({"id": 100 + k, "image_id": 100 + k, "category_id": 1})
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(categories)]}
    path = root / "export.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_params(root: Path, block: dict) -> Path:
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"prepare": {"mine": block}}), encoding="utf-8")
    return params


def refused(salgl_main, root: Path, block: dict, *fragments: str) -> str:
    """Run prepare on ``block``: exit 2, one error line holding every fragment, nothing
    written or changed under ``root``; returns the line."""
    params = write_params(root, block)
    out = root / "out"
    before = tree_snapshot(root)
    code, _, err = salgl_main("prepare", "mine", "--params", str(params), "--out", str(out))
    lines = [line for line in err.splitlines() if line.startswith("salgl ")]
    assert code == 2 and len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not out.exists()
    assert changes(before, tree_snapshot(root)) == []
    return lines[0]


def csv_block(table: Path, images: Path, **extra) -> dict:
    return {"format": "csv", "annotations": str(table), "images": str(images), **extra}


def coco_block(export: Path, images: Path, **extra) -> dict:
    return {"format": "coco", "annotations": str(export), "images": str(images), **extra}


def outside_references(root: Path) -> list[tuple[str, str]]:
    """(reference, what the message says) for the review's three escapes, and a relative
    one to an image that exists beside the folder."""
    outside = outside_image(root)
    return [("../../x", "leads out of the images folder"),
            (str(outside), "is an absolute path"),
            ("../../../../proc/self/environ", "leads out of the images folder"),
            ("../elsewhere/photo.png", "leads out of the images folder")]


# ------------------------------------------------------------ finding 3: outside the folder

@pytest.mark.parametrize("case", [0, 1, 2, 3])
@pytest.mark.parametrize("annotated", [True, False])
def test_coco_file_name_outside_the_folder_is_refused(tmp_path: Path, salgl_main, case: int,
                                                      annotated: bool) -> None:
    """Annotated: it would be opened and listed; unannotated: recorded in meta.json."""
    images = image_folder(tmp_path)
    reference, says = outside_references(tmp_path)[case]
    export = coco_file(tmp_path, [(reference, annotated)])
    line = refused(salgl_main, tmp_path, coco_block(export, images),
                   f"{export}: image id 100: image {shown(reference)} {says}")
    assert "absolute_paths: true" in line or case != 1


@pytest.mark.parametrize("case", [0, 1, 2, 3])
def test_csv_image_outside_the_folder_is_refused(tmp_path: Path, salgl_main,
                                                 case: int) -> None:
    images = image_folder(tmp_path)
    reference, says = outside_references(tmp_path)[case]
    table = tag_table(tmp_path, [f"{reference},cat"])
    refused(salgl_main, tmp_path, csv_block(table, images),
            f"{table}:14: image {shown(reference)} {says}")


def test_onehot_image_outside_the_folder_is_refused(tmp_path: Path, salgl_main) -> None:
    images = image_folder(tmp_path)
    table = tmp_path / "onehot.csv"
    table.write_text("image,cat,dog\n" + "".join(f"a{i}.png,{1 - i % 2},{i % 2}\n"
                                                 for i in range(IMAGES))
                     + "..\\..\\x.png,1,0\n", encoding="utf-8")  # backslashes read as slashes
    refused(salgl_main, tmp_path, {"format": "onehot", "annotations": str(table),
                                   "images": str(images)},
            f"{table}:14: image '../../x.png' leads out of the images folder")


def test_system_files_stay_refused_with_absolute_paths_allowed(tmp_path: Path,
                                                               salgl_main) -> None:
    images = image_folder(tmp_path)
    table = tag_table(tmp_path, ["/proc/self/environ,cat"])
    refused(salgl_main, tmp_path, csv_block(table, images, absolute_paths=True),
            f"{table}:14: image '/proc/self/environ' is a system file (it lies in /proc)")


def test_a_link_into_proc_is_refused(tmp_path: Path, salgl_main) -> None:
    """Links in the folder are followed, but never into /proc (nor /sys, /dev)."""
    images = image_folder(tmp_path)
    (images / "env.png").symlink_to("/proc/self/environ")
    export = coco_file(tmp_path, [("env.png", False)])  # unannotated: would be recorded only
    refused(salgl_main, tmp_path, coco_block(export, images),
            f"{export}: image id 100: image 'env.png' is a system file (it lies in /proc)")


def test_a_folder_named_as_an_image_is_not_opened(tmp_path: Path, salgl_main) -> None:
    images = image_folder(tmp_path)
    (images / "folder.png").mkdir()
    table = tag_table(tmp_path, ["folder.png,cat"])
    refused(salgl_main, tmp_path, csv_block(table, images),
            f"{table}:14: image folder.png is not a regular file")


@pytest.mark.parametrize("second", ["absolute", "relative"])
def test_the_same_file_on_two_rows_is_one_image(tmp_path: Path, salgl_main,
                                                second: str) -> None:
    """Written absolutely twice, or once relative and once absolute: one image, two rows
    that disagree are an error naming both (it was a traceback, or listed twice)."""
    images = image_folder(tmp_path)
    if second == "absolute":
        target = outside_image(tmp_path)
        rows = [f"{target},cat", f"{target},dog"]
    else:
        target = images / "a0.png"  # row 2 says cat
        rows = [f"{target},dog"]
    table = tag_table(tmp_path, rows)
    row = 15 if second == "absolute" else 14
    first = 14 if second == "absolute" else 2
    refused(salgl_main, tmp_path, csv_block(table, images, absolute_paths=True),
            f"{table}:{row}: image {target.as_posix()} listed again with other tags (first "
            f"on row {first})")


def test_absolute_paths_allowed_prepare_an_outside_image(tmp_path: Path, salgl_main) -> None:
    """The one way to name an image outside the folder; a link in the folder to a photo
    elsewhere is listed by its own name; meta.json records in-folder paths relative to the
    folder, and what prepare writes loads back."""
    images = image_folder(tmp_path)
    outside = outside_image(tmp_path)
    (images / "linked.png").symlink_to(draw(tmp_path / "elsewhere" / "other.png", [1], 98))
    odd = draw(images / "Screenshot 10.00\u202fPM.png", [1], 7)  # a no-break space: fine
    export = coco_file(tmp_path, [(str(outside), True), (odd.name, True), ("linked.png", True),
                                  ("sub\\unlabelled.png", False)], ("cat", "dog"))
    params = write_params(tmp_path, coco_block(export, images, absolute_paths=True,
                                               min_positives=1))
    out = tmp_path / "out"
    code, _, err = salgl_main("prepare", "mine", "--params", str(params), "--out", str(out))
    assert code == 0, err
    listed = [line.split("\t")[0] for name in ("train", "val", "test")
              for line in (out / f"{name}.tsv").read_text(encoding="utf-8").splitlines()]
    assert outside.as_posix() in listed and odd.name in listed
    assert sorted(listed) == sorted([outside.as_posix(), odd.name, "linked.png",
                                     *(f"a{i}.png" for i in range(IMAGES))])
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["dropped"] == [{"split": "train", "path": "sub/unlabelled.png",
                                "reason": "no annotation"}]
    data = load_prepared(out)
    paths = {*data.train.paths, *data.test.paths, *(data.val.paths if data.val else [])}
    assert str(outside) in paths and str(odd) in paths


# ------------------------------------------------------------ finding 7: unlistable names

NAMES = [("\t", "a tab"), ("\x0b", "U+000B (a control character)"),
         ("\u2028", "U+2028 (a line separator)")]


@pytest.mark.parametrize("char,word", NAMES)
def test_image_name_the_lists_cannot_hold(tmp_path: Path, salgl_main, char: str,
                                          word: str) -> None:
    """The file exists under that name; prepare used to accept it and embed to fail."""
    images = image_folder(tmp_path)
    name = f"b{char}c.png"
    draw(images / name, [0], 50)
    table = tag_table(tmp_path, [f'"{name}",cat'])
    refused(salgl_main, tmp_path, csv_block(table, images),
            f"{table}:14: image name {name!r} contains {word} (the prepared lists cannot "
            "hold it")


def test_coco_file_name_the_lists_cannot_hold(tmp_path: Path, salgl_main) -> None:
    images = image_folder(tmp_path)
    name = "b\u2028c.png"
    draw(images / name, [0], 50)
    export = coco_file(tmp_path, [(name, True)])
    refused(salgl_main, tmp_path, coco_block(export, images),
            f"{export}: image id 100: image name 'b\\u2028c.png' contains U+2028")


@pytest.mark.parametrize("label,word", [
    ("c\x0bat", "U+000B (a control character)"),
    ("c\u2028at", "U+2028 (a line separator)"),
    ("\x1b[31mred", "U+001B (a control character)"),
    ("two\nlines", "a newline"),
    ("zero\u200bwidth", "U+200B (an invisible format character)"),
])
def test_tag_the_lists_cannot_hold(tmp_path: Path, salgl_main, label: str, word: str) -> None:
    images = image_folder(tmp_path)
    draw(images / "b.png", [0], 50)
    table = tag_table(tmp_path, [f'b.png,"{label}"'])
    refused(salgl_main, tmp_path, csv_block(table, images),
            f"{table}:14: label {label!r} contains {word}")


def test_coco_category_with_an_escape_is_refused(tmp_path: Path, salgl_main) -> None:
    images = image_folder(tmp_path)
    export = coco_file(tmp_path, [], ("cat", "\x1b[31mdog"))
    refused(salgl_main, tmp_path, coco_block(export, images),
            f"{export}: category id 2: label '\\x1b[31mdog' contains U+001B")


def test_onehot_header_with_a_control_character_is_refused(tmp_path: Path,
                                                           salgl_main) -> None:
    images = image_folder(tmp_path)
    table = tmp_path / "onehot.csv"
    table.write_text("image,cat,d\u2028og\n" + "".join(f"a{i}.png,{1 - i % 2},{i % 2}\n"
                                                      for i in range(IMAGES)),
                     encoding="utf-8")
    refused(salgl_main, tmp_path, {"format": "onehot", "annotations": str(table),
                                   "images": str(images)},
            f"{table} header: label 'd\\u2028og' contains U+2028")


def test_the_writer_refuses_what_the_readers_would_split(tmp_path: Path) -> None:
    """The backstop for other preparers: same rule, naming the list file and entry."""
    for image, label, fragment in (("a\x0bb.png", "cat", "entry 2: image 'a\\x0bb.png' "
                                    "contains U+000B"),
                                   ("b.png", "c\u2028at", "entry 2: label 'c\\u2028at'")):
        with pytest.raises(SalglError, match=re.escape(f"train.tsv: {fragment}")):
            check_list_entries([("a.png", ["cat"]), (image, [label])], "train.tsv")
    out = tmp_path / "p"
    out.mkdir()
    with pytest.raises(SalglError, match=re.escape("labels.txt: label '\\x1b[1m' contains "
                                                   "U+001B")):
        write_prepared(out, ["\x1b[1m"], {"train": [], "test": []}, {})
    assert list(out.iterdir()) == []


def test_list_readers_apply_the_same_rule(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("cat\nred\x1b[0m\n", encoding="utf-8")
    with pytest.raises(SalglError, match=re.escape("labels.txt:2: label 'red\\x1b[0m' "
                                                   "contains U+001B")):
        read_labels(tmp_path / "labels.txt")


# ------------------------------------------------------------ finding 7: tracebacks and silence

def test_non_label_columns_must_be_names(tmp_path: Path, salgl_main) -> None:
    images = image_folder(tmp_path)
    table = tmp_path / "onehot.csv"
    table.write_text("image,cat,dog\n" + "".join(f"a{i}.png,{1 - i % 2},{i % 2}\n"
                                                 for i in range(IMAGES)), encoding="utf-8")
    refused(salgl_main, tmp_path, {"format": "onehot", "annotations": str(table),
                                   "images": str(images), "non_label_columns": [5]},
            "prepare.mine.non_label_columns: 5 (int) is not a column name")


@pytest.mark.parametrize("fmt", ["csv", "coco"])
def test_annotation_file_not_utf8(tmp_path: Path, salgl_main, fmt: str) -> None:
    images = image_folder(tmp_path)
    if fmt == "csv":
        path = tag_table(tmp_path, [])
        path.write_bytes(path.read_bytes() + "a0.png,caf\u00e9\n".encode("latin-1"))
        block, says = csv_block(path, images), f"{path}: not UTF-8 text (invalid"
    else:
        path = coco_file(tmp_path, [], ("cat", "CAFE"))  # json.dumps writes ASCII only
        path.write_bytes(path.read_bytes().replace(b"CAFE", "caf\u00e9".encode("latin-1")))
        block, says = coco_block(path, images), f"{path}: not valid JSON (not UTF-8 text"
    refused(salgl_main, tmp_path, block, says)


def test_onehot_stray_text_cell_is_named(tmp_path: Path, salgl_main) -> None:
    """A 0/1 column with one "yes" was silently left out as a text column."""
    images = image_folder(tmp_path)
    table = tmp_path / "onehot.csv"
    rows = [f"a{i}.png,{1 - i % 2},{i % 2},{'Male' if i % 3 else 'Female'}"
            for i in range(IMAGES)]
    rows[4] = "a4.png,yes,0,Male"  # row 6
    table.write_text("image,cat,dog,sex\n" + "\n".join(rows) + "\n", encoding="utf-8")
    refused(salgl_main, tmp_path, {"format": "onehot", "annotations": str(table),
                                   "images": str(images)},
            f"{table}:6: column 'cat' holds 'yes', not 1, 0, -1 or empty")


def test_an_all_text_column_is_still_not_a_label(tmp_path: Path, salgl_main) -> None:
    images = image_folder(tmp_path)
    table = tmp_path / "onehot.csv"
    table.write_text("image,cat,dog,sex\n" + "".join(
        f"a{i}.png,{1 - i % 2},{i % 2},{'Male' if i % 3 else ''}\n" for i in range(IMAGES)),
        encoding="utf-8")
    params = write_params(tmp_path, {"format": "onehot", "annotations": str(table),
                                     "images": str(images), "min_positives": 1})
    code, _, err = salgl_main("prepare", "mine", "--params", str(params), "--out",
                              str(tmp_path / "out"))
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["labels"] == ["cat", "dog"]
    assert os.path.isfile(tmp_path / "out" / "train.tsv")


def test_the_rule_covers_every_line_break_the_readers_split_on() -> None:
    """str.splitlines (the list readers) and str.split("\\t") define what breaks a line."""
    breaking = [chr(c) for c in range(0x110000) if len(f"a{chr(c)}b".splitlines()) > 1]
    assert len(breaking) >= 10
    assert [c for c in [*breaking, "\t"] if unlistable_character(c) is None] == []


def test_labels_equal_once_unicode_normalised_are_one_name(tmp_path: Path, salgl_main) -> None:
    """"café" with a composed é and with e + a combining accent print identically: two such
    labels would give two columns a reader cannot tell apart."""
    images = image_folder(tmp_path)
    draw(images / "b.png", [0], 50)
    draw(images / "c.png", [1], 51)
    table = tag_table(tmp_path, ["b.png,caf\u00e9", "c.png,cafe\u0301"])
    line = refused(salgl_main, tmp_path, csv_block(table, images), "duplicate label")
    assert "equal once Unicode-normalised" in line


@pytest.mark.parametrize("key,value,expected", [
    ("extension", "." + "a" * 130_000, "is not a file extension (1 to 16 characters"),
    ("tag_separator", "|" * 1000, "is not a separator (1 to 4 characters"),
    ("tag_separator", "", "is not a separator (1 to 4 characters"),
])
def test_a_setting_that_joins_every_name_is_bounded(tmp_path: Path, salgl_main, key: str,
                                                    value: str, expected: str) -> None:
    images = image_folder(tmp_path)
    draw(images / "b.png", [0], 50)
    table = tag_table(tmp_path, ["b.png,cat"])
    line = refused(salgl_main, tmp_path, csv_block(table, images, **{key: value}),
                   f"prepare.mine.{key}: ", expected)
    assert len(line) < 200
