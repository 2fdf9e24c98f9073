"""Readers of users' own collections: COCO exports, tag tables, one-hot tables.

Images are empty files: the readers only check that they exist. Every error test asserts that
the message names the exact file and the row, id or column at fault.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from salgl.data.formats.coco_export import read_coco
from salgl.data.formats.collection import Collection, check_collection
from salgl.data.formats.csv_tags import read_csv_tags
from salgl.data.formats.onehot import read_onehot
from salgl.data.images import Sample
from salgl.embeddings import embeddable_name
from salgl.errors import SalglError


def touch(folder: Path, *names: str) -> Path:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    return folder


def raises(message: str):
    """pytest.raises matching ``message`` literally (paths hold regex characters)."""
    return pytest.raises(SalglError, match=re.escape(message))


def by_name(c: Collection, split: str = "all") -> dict[str, tuple[list[str], list[str]]]:
    return {s.path.name: (s.labels, s.ignored) for s in c.splits[split]}


# ---------------------------------------------------------------- COCO exports

def coco(images: list[tuple[int, str]], anns: list[tuple[int, int]],
         cats: list[tuple[int, str]], **extra) -> dict:
    return {
        "info": {"description": "export"}, "licenses": [], **extra,
        "images": [{"id": i, "file_name": f, "width": 4, "height": 4} for i, f in images],
        "annotations": [{"id": n + 1, "image_id": i, "category_id": c, "segmentation": [],
                         **({"bbox": [0, 0, 1, 1]} if n % 2 else {})}
                        for n, (i, c) in enumerate(anns)],
        "categories": [{"id": c, "name": name, "supercategory": "objects"} for c, name in cats],
    }


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


ROBOFLOW_CATS = [(0, "objects"), (1, "cat"), (3, " dog ")]


@pytest.fixture
def roboflow(tmp_path: Path) -> tuple[Path, Path]:
    """0-based ids with a gap, a placeholder parent, sub-folders, one image without annotation."""
    images = touch(tmp_path / "imgs", "a.jpg", "sub/b.jpg", "sub/deep/c.jpg", "empty.jpg")
    data = coco([(0, "a.jpg"), (1, "sub/b.jpg"), (2, "sub/deep/c.jpg"), (3, "empty.jpg")],
                [(0, 1), (0, 1), (1, 3), (2, 1), (2, 3)], ROBOFLOW_CATS)
    return write_json(tmp_path / "_annotations.coco.json", data), images


def test_coco_export_roboflow_style(roboflow: tuple[Path, Path]) -> None:
    ann, images = roboflow
    c = read_coco(ann, images)
    assert c.labels == ["cat", "dog"]
    assert list(c.splits) == ["all"]
    assert [s.path for s in c.splits["all"]] == [images / "a.jpg", images / "sub/b.jpg",
                                                 images / "sub/deep/c.jpg"]
    assert [s.labels for s in c.splits["all"]] == [["cat"], ["dog"], ["cat", "dog"]]
    assert c.dropped == [{"path": (images / "empty.jpg").as_posix(), "reason": "no annotation"}]
    assert "left out category 'objects' (id 0): no annotation uses it" in c.notes
    assert "dropped 1 image(s) without annotation" in c.notes


def test_coco_keep_unannotated(roboflow: tuple[Path, Path]) -> None:
    ann, images = roboflow
    c = read_coco(ann, images, keep_unannotated=True)
    assert by_name(c)["empty.jpg"] == ([], [])
    assert c.dropped == []
    assert "kept 1 image(s) without annotation as all-negative" in c.notes


def test_coco_one_based_non_contiguous_ids_order_by_id(tmp_path: Path) -> None:
    images = touch(tmp_path / "imgs", "a.png")
    ann = write_json(tmp_path / "a.json", coco([(7, "a.png")], [(7, 9), (7, 2), (7, 5)],
                                               [(9, "zebra"), (2, "bird"), (5, "apple")]))
    c = read_coco(ann, images)
    assert c.labels == ["bird", "apple", "zebra"]
    assert c.splits["all"][0].labels == ["bird", "apple", "zebra"]


def test_coco_one_file_per_split(tmp_path: Path) -> None:
    """Roboflow's layout: a folder per split holding its images and its JSON ("valid")."""
    cats = [(0, "objects"), (1, "cat"), (2, "dog")]
    files, folders = {}, {}
    for split, name, cat in (("train", "t.jpg", 1), ("valid", "v.jpg", 2), ("test", "x.jpg", 1)):
        folders[split] = touch(tmp_path / split, name)
        files[split] = write_json(tmp_path / split / "_annotations.coco.json",
                                  coco([(0, name)], [(0, cat)], cats))
    c = read_coco(files, folders)
    assert list(c.splits) == ["train", "val", "test"]
    assert c.labels == ["cat", "dog"]
    assert by_name(c, "val") == {"v.jpg": (["dog"], [])}
    assert c.splits["train"][0].path == tmp_path / "train" / "t.jpg"


def test_coco_splits_share_one_images_folder(tmp_path: Path) -> None:
    """A category used only in one split's file is still a label."""
    images = touch(tmp_path / "imgs", "t.jpg", "v.jpg")
    cats = [(1, "cat"), (2, "dog")]
    train = write_json(tmp_path / "train.json", coco([(1, "t.jpg")], [(1, 1)], cats))
    val = write_json(tmp_path / "val.json", coco([(1, "v.jpg")], [(1, 2)], cats))
    c = read_coco({"train": train, "val": val}, images)
    assert c.labels == ["cat", "dog"] and c.notes == []
    assert by_name(c, "train") == {"t.jpg": (["cat"], [])}


def test_coco_split_files_must_agree_on_categories(tmp_path: Path) -> None:
    images = touch(tmp_path / "imgs", "t.jpg", "v.jpg")
    train = write_json(tmp_path / "train.json", coco([(1, "t.jpg")], [(1, 1)], [(1, "cat")]))
    val = write_json(tmp_path / "val.json", coco([(1, "v.jpg")], [(1, 1)], [(1, "kitten")]))
    with raises(f"{val}: categories differ from {train} (id 1: 'kitten' here, 'cat' there)"):
        read_coco({"train": train, "val": val}, images)


def test_coco_same_image_in_two_splits(tmp_path: Path) -> None:
    images = touch(tmp_path / "imgs", "a.jpg")
    train = write_json(tmp_path / "train.json", coco([(1, "a.jpg")], [(1, 1)], [(1, "cat")]))
    test = write_json(tmp_path / "test.json", coco([(1, "a.jpg")], [(1, 1)], [(1, "cat")]))
    with raises(f"image {images / 'a.jpg'} appears in splits 'train' and 'test'"):
        read_coco({"train": train, "test": test}, images)


def test_coco_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    ann = tmp_path / "broken.json"
    ann.write_text('{\n  "images": [\n    {"id": 1,, "file_name": "a.jpg"}\n', encoding="utf-8")
    with raises(f"{ann}:3: not valid JSON (Expecting property name enclosed in double "
                "quotes, column 14)"):
        read_coco(ann, tmp_path)


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_coco_missing_top_level_key(tmp_path: Path, key: str) -> None:
    data = coco([(1, "a.jpg")], [(1, 1)], [(1, "cat")])
    del data[key]
    ann = write_json(tmp_path / "a.json", data)
    with raises(f"{ann}: no top-level key '{key}'"):
        read_coco(ann, tmp_path)


COCO_ERRORS = {
    "undefined category": (
        lambda d: d["annotations"].append({"id": 17, "image_id": 1, "category_id": 99}),
        "annotation id 17: category_id 99 is not defined in categories"),
    "unknown image": (
        lambda d: d["annotations"].append({"id": 5, "image_id": 42, "category_id": 1}),
        "annotation id 5: image_id 42 names no image in images"),
    "duplicate image id": (
        lambda d: d["images"].append({"id": 1, "file_name": "b.jpg"}),
        "image id 1 is defined twice"),
    "duplicate category name": (
        lambda d: d["categories"].append({"id": 4, "name": " cat"}),
        "category name 'cat' is used by ids 1 and 4"),
    "image missing on disk": (
        lambda d: (d["images"].append({"id": 3, "file_name": "sub/gone.jpg"}),
                   d["annotations"].append({"id": 8, "image_id": 3, "category_id": 1})),
        "image id 3: {images}/sub/gone.jpg not found"),
    "no labels left": (
        lambda d: d["annotations"].clear(),
        "no labels left: no annotation uses any of the 1 categories"),
}


@pytest.mark.parametrize("case", list(COCO_ERRORS))
def test_coco_errors_name_file_and_id(tmp_path: Path, case: str) -> None:
    images = touch(tmp_path / "imgs", "a.jpg", "b.jpg")
    data = coco([(1, "a.jpg")], [(1, 1)], [(1, "cat")])
    change, message = COCO_ERRORS[case]
    change(data)
    ann = write_json(tmp_path / "export.json", data)
    with raises(f"{ann}: " + message.format(images=images)):
        read_coco(ann, images)


# ---------------------------------------------------------------- tag tables

def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_tags_space_separated_bom_crlf_quotes_blank_lines(tmp_path: Path) -> None:
    images = touch(tmp_path / "imgs", "a.jpg", "b.jpg", "c d.jpg", "sub/e.jpg")
    table = write_bytes(tmp_path / "tags.csv", (
        "\ufeffImage,Tags\r\n"
        "a, dog  cat \r\n"
        '"c d","cat Traffic_light"\r\n'
        "b,\r\n"
        "sub/e.jpg,dog\r\n"
        "a,cat dog\r\n"
        "\r\n\r\n,\r\n").encode("utf-8"))
    c = read_csv_tags(table, images, extension="jpg")
    assert list(c.splits) == ["all"]
    assert c.labels == ["Traffic_light", "cat", "dog"]  # code-point order: upper case first
    assert by_name(c) == {"a.jpg": (["cat", "dog"], []), "c d.jpg": (["Traffic_light", "cat"], []),
                          "b.jpg": ([], []), "e.jpg": (["dog"], [])}
    assert c.splits["all"][3].path == images / "sub" / "e.jpg"
    assert "kept 1 image(s) without tags as all-negative" in c.notes
    assert any("merged 1 repeated row(s)" in n for n in c.notes)


@pytest.mark.parametrize("sep,cell", [(",", '"cat, dog"'), ("|", "cat|dog"),
                                      (";", " cat ; dog;")])
def test_tags_separators(tmp_path: Path, sep: str, cell: str) -> None:
    images = touch(tmp_path / "imgs", "a.png", "b.png")
    table = tmp_path / "t.csv"
    table.write_text(f"filename,labels\na.png,{cell}\nb.png,dog\n", encoding="utf-8")
    c = read_csv_tags(table, images, tag_separator=sep)
    assert by_name(c) == {"a.png": (["cat", "dog"], []), "b.png": (["dog"], [])}


def test_tags_tsv_split_column_and_explicit_columns(tmp_path: Path) -> None:
    images = touch(tmp_path / "imgs", "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    table = tmp_path / "t.tsv"
    table.write_text("img\tkind\twhat\n"
                     "a.jpg\tTrain\tcat\nb.jpg\tvalidation\tdog\n"
                     "c.jpg\tVALID\tcat dog\nd.jpg\t test \tdog\n", encoding="utf-8")
    c = read_csv_tags(table, images, image_column="img", tags_column="What",
                      split_column="kind")
    assert list(c.splits) == ["train", "val", "test"]
    assert [s.path.name for s in c.splits["val"]] == ["b.jpg", "c.jpg"]


def tags_table(tmp_path: Path, body: str, name: str = "t.csv") -> tuple[Path, Path]:
    images = touch(tmp_path / "imgs", "a.jpg", "b.jpg", "x.jpg")
    table = tmp_path / name
    table.write_text(body, encoding="utf-8")
    return table, images


@pytest.mark.parametrize("body,kwargs,message", [
    ("name,tags\na.jpg,cat\n", {},
     "no column 'image' (nor 'image_name', 'filename', 'file_name', 'file', 'path'; "
     "columns: name, tags); set image_column"),
    ("a,b,c\na.jpg,cat,1\n", {"image_column": "a"},
     "no column 'tags' (nor 'labels', 'label', 'categories'; columns: a, b, c); set tags_column"),
    ("image,tags\na.jpg,cat\n", {"tags_column": "classes"},
     "no column 'classes' (columns: image, tags); set tags_column"),
    ("image,tags\na.jpg,cat\n", {"split_column": "split"},
     "no column 'split' (columns: image, tags); set split_column"),
    ("image,tags\n\n\n", {}, "no data rows (only the header)"),
    ("", {}, "empty table (no header row)"),
])
def test_tags_table_errors(tmp_path: Path, body: str, kwargs: dict, message: str) -> None:
    table, images = tags_table(tmp_path, body)
    with raises(f"{table}: {message}"):
        read_csv_tags(table, images, **kwargs)


@pytest.mark.parametrize("body,kwargs,message", [
    ("image,tags\na.jpg,cat\nb.jpg,dog\n\nmissing,cat\n", {"extension": ".jpg"},
     ":5: image missing.jpg not found in {images}"),
    ("image,tags\nx.jpg,cat\nb.jpg,cat\na.jpg,dog\nx.jpg,cat\nx.jpg,dog cat\n", {},
     ":6: image x.jpg listed again with other tags (first on row 2)"),
    ("image,tags,split\na.jpg,cat,train\nb.jpg,dog,dev\n", {"split_column": "split"},
     ":3: split 'dev' in column 'split' is not train, val or test"),
    ("image,tags,split\na.jpg,cat,train\na.jpg,cat,test\n", {"split_column": "split"},
     ":3: image a.jpg listed again in split 'test' (first on row 2, in 'train')"),
    ("image,tags\na.jpg,cat\nb.jpg,cat,dog\n", {},
     ":3: 3 fields but the header has 2 (quote a field that holds the delimiter ',')"),
    ("image,tags\na.jpg,cat\n,dog\n", {}, ":3: empty image name"),
    ("image,tags\na.jpg,cat\nb.jpg,dog x\tcat\n", {}, ":3: label 'x\\tcat' contains a tab"),
])
def test_tags_row_errors(tmp_path: Path, body: str, kwargs: dict, message: str) -> None:
    table, images = tags_table(tmp_path, body)
    with raises(f"{table}" + message.format(images=images)):
        read_csv_tags(table, images, **kwargs)


def test_tags_not_utf8(tmp_path: Path) -> None:
    table, images = tags_table(tmp_path, "")
    table.write_bytes("image,tags\na.jpg,caf\u00e9\n".encode("latin-1"))
    with raises(f"{table}: not UTF-8 text"):
        read_csv_tags(table, images)


# ---------------------------------------------------------------- one-hot tables

CHEXPERT = ("Path,Sex,Age,Frontal/Lateral,No Finding,Edema,Cardiomegaly\n"
            "p/a.jpg,Male,68,Frontal,1.0,0.0,\n"
            "p/b.jpg,Female,, Lateral ,,-1.0, 1 \n"
            "p/c.jpg,Female,40,Frontal,0,1,-1\n")


def onehot_table(tmp_path: Path, body: str = CHEXPERT) -> tuple[Path, Path]:
    images = touch(tmp_path / "imgs", "p/a.jpg", "p/b.jpg", "p/c.jpg")
    table = tmp_path / "train.csv"
    table.write_text(body, encoding="utf-8")
    return table, images


def test_onehot_cells_and_non_label_columns(tmp_path: Path) -> None:
    table, images = onehot_table(tmp_path)
    c = read_onehot(table, images, non_label_columns=["age"])
    assert c.labels == ["No Finding", "Edema", "Cardiomegaly"]
    assert by_name(c) == {"a.jpg": (["No Finding"], ["Cardiomegaly"]),
                          "b.jpg": (["Cardiomegaly"], ["No Finding", "Edema"]),
                          "c.jpg": (["Edema"], ["Cardiomegaly"])}
    assert c.splits["all"][0].path == images / "p" / "a.jpg"
    assert "column 'Sex' is not a label: it holds text ('Male' on row 2)" in c.notes
    assert "column 'Frontal/Lateral' is not a label: it holds text ('Frontal' on row 2)" \
        in c.notes
    assert "read 2 uncertain (-1) cell(s) as ignore" in c.notes
    assert "read 2 empty cell(s) as ignore" in c.notes


@pytest.mark.parametrize("uncertain,missing,b", [
    ("ignore", "ignore", (["Cardiomegaly"], ["No Finding", "Edema"])),
    ("positive", "ignore", (["Edema", "Cardiomegaly"], ["No Finding"])),
    ("negative", "ignore", (["Cardiomegaly"], ["No Finding"])),
    ("ignore", "negative", (["Cardiomegaly"], ["Edema"])),
    ("positive", "negative", (["Edema", "Cardiomegaly"], [])),
    ("negative", "negative", (["Cardiomegaly"], [])),
])
def test_onehot_uncertain_and_missing_policies(tmp_path: Path, uncertain: str, missing: str,
                                               b: tuple[list[str], list[str]]) -> None:
    table, images = onehot_table(tmp_path)
    c = read_onehot(table, images, non_label_columns=["Age"], uncertain=uncertain,
                    missing=missing)
    assert by_name(c)["b.jpg"] == b


def test_onehot_split_column_and_extension(tmp_path: Path) -> None:
    table, images = onehot_table(tmp_path, "file,set,cat,dog\np/a,train,1,0\np/b,test,0,1\n"
                                           "p/c,Validation,1,1\n")
    c = read_onehot(table, images, extension="jpg", split_column="set")
    assert c.labels == ["cat", "dog"]
    assert {k: [s.path.name for s in v] for k, v in c.splits.items()} == \
        {"train": ["a.jpg"], "val": ["c.jpg"], "test": ["b.jpg"]}


@pytest.mark.parametrize("body,kwargs,message", [
    (CHEXPERT, {}, ":2: column 'Age' holds '68', not 1, 0, -1 or empty (name it in "
     "non_label_columns if it is not a label)"),
    ("path,cat,dog\np/a.jpg,1,0\np/b.jpg,0,2\n", {}, ":3: column 'dog' holds '2', not 1"),
    ("path,cat,dog\np/a.jpg,0.5,0\n", {}, ":2: column 'cat' holds '0.5', not 1"),
    ("path,cat\np/a.jpg,1\np/a.jpg,0\n", {},
     ":3: image p/a.jpg listed again with other values (first on row 2)"),
    ("path,cat\np/a.jpg,1\np/gone.jpg,1\n", {}, ":3: image p/gone.jpg not found in {images}"),
    ("path,sex\np/a.jpg,M\n", {}, ": no label columns (columns: path, sex)"),
    ("path,cat\np/a.jpg,1\n", {"non_label_columns": ["age"]},
     ": non_label_columns names 'age', which is not a column (columns: path, cat)"),
    ("img,cat\np/a.jpg,1\n", {}, ": no column 'image' (nor 'image_name'"),
    ("path,cat,cat\np/a.jpg,1,0\n", {}, ": column 'cat' appears twice (columns 2 and 3)"),
])
def test_onehot_errors(tmp_path: Path, body: str, kwargs: dict, message: str) -> None:
    table, images = onehot_table(tmp_path, body)
    with raises(f"{table}" + message.format(images=images)):
        read_onehot(table, images, **kwargs)


def test_onehot_bad_policy(tmp_path: Path) -> None:
    table, images = onehot_table(tmp_path)
    with raises("uncertain must be one of positive, negative, ignore, not 'maybe'"):
        read_onehot(table, images, uncertain="maybe")
    with raises("missing must be one of ignore, negative, not 'positive'"):
        read_onehot(table, images, missing="positive")


# ---------------------------------------------------------------- shared parts

@pytest.mark.parametrize("label,words", [
    ("traffic_light", "traffic light"), ("traffic-light", "traffic light"),
    ("TrafficLight", "traffic light"), ("trafficLight", "traffic light"),
    ("Traffic  Light ", "traffic light"), ("hair__drier", "hair drier"),
    ("Route66", "route 66"), ("HTTPServer", "http server"), ("men's shirt", "men's shirt"),
    ("No Finding", "no finding"), ("a/b", "a b"), ("-", "-"),
])
def test_embeddable_name(label: str, words: str) -> None:
    assert embeddable_name(label) == words


def sample(name: str, *labels: str) -> Sample:
    return Sample(Path("/data") / name, list(labels))


@pytest.mark.parametrize("collection,message", [
    (Collection(["cat"], {"train": [sample("a.jpg", "cat")],
                          "test": [sample("b.jpg"), sample("a.jpg")]}, [], []),
     "W: image /data/a.jpg appears in splits 'train' and 'test'"),
    (Collection(["cat"], {"all": [sample("a.jpg"), sample("./a.jpg")]}, [], []),
     "W: image /data/a.jpg appears twice in split 'all'"),
    (Collection(["cat"], {"train": [sample("a.jpg")], "val": []}, [], []),
     "W: split 'val' has no images"),
    (Collection(["cat", "dog,s"], {"all": [sample("a.jpg")]}, [], []),
     "W: label 'dog,s' contains a comma"),
    (Collection(["cat", "cat"], {"all": [sample("a.jpg")]}, [], []),
     "W: duplicate label 'cat' (entries 1 and 2)"),
    (Collection(["cat"], {"all": [sample("a.jpg")], "train": [sample("b.jpg")]}, [], []),
     "W: split 'all' cannot go with others (all, train)"),
    (Collection(["cat"], {"dev": [sample("a.jpg")]}, [], []),
     "W: split 'dev' is not train, val, test or all"),
    (Collection(["cat"], {}, [], []), "W: no splits"),
    (Collection(["cat"], {"all": [sample("a.jpg", "dog")]}, [], []),
     "W: image /data/a.jpg has unknown label 'dog'"),
])
def test_check_collection_errors(collection: Collection, message: str) -> None:
    with raises(message):
        check_collection(collection, "W")


def test_check_collection_accepts_valid() -> None:
    check_collection(Collection(["cat"], {"train": [sample("a.jpg", "cat")],
                                          "test": [sample("b.jpg")]}, [], []), "W")


def test_a_name_cut_in_two_by_the_separator_is_warned_of(tmp_path: Path, caplog) -> None:
    """The default separator ' ' reads "ankle boot" as two labels: legal, but the two always
    come together in one order, which a real pair of labels does not."""
    import logging

    images = touch(tmp_path / "img", "a.png", "b.png", "c.png", "d.png")
    table = tmp_path / "tags.csv"
    table.write_text("image,tags\na.png,ankle boot\nb.png,bag ankle boot\nc.png,bag\n"
                     "d.png,bag shirt\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="salgl"):
        c = read_csv_tags(table, images)
    assert c.labels == ["ankle", "bag", "boot", "shirt"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{table}: tags 'ankle' and 'boot' always appear together, in this "
                        "order (2 rows): one label 'ankle boot' split at tag_separator ' '? Set "
                        "tag_separator to what separates labels (',', '|', ';')"]
    caplog.clear()
    table.write_text("image,tags\na.png,ankle boot\nb.png,bag|ankle boot\nc.png,bag\n"
                     "d.png,bag|shirt\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="salgl"):
        c = read_csv_tags(table, images, tag_separator="|")
    assert c.labels == ["ankle boot", "bag", "shirt"] and not caplog.records
