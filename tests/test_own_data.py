"""Users' own collections: COCO exports, tag tables and one-hot tables, through the real
`dvc repro` and the command line, and prepared data that travels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from salgl.config import dataset_params
from salgl.data.prepared import load_prepared
from salgl.errors import SalglError
from salgl.pipeline import run_embed, run_evaluate, run_prepare, run_train

from dvc_repo import copy_repository, run
from fakes import TINY_TRAIN
from own_fixtures import PETS, coco_export, onehot_table, tag_table

TINY = {**TINY_TRAIN, "num_scenes": 2, "epochs": 2, "batch_size": 8, "lr": 0.003,
        "ema_decay": 0.9}


def own_params(root: Path) -> dict:
    """The three formats as a user writes them (paths relative to the repository)."""
    return {
        "coco_pets": {"format": "coco",
                      "annotations": {s: f"data/raw/pets/{s}/_annotations.coco.json"
                                      for s in ("train", "valid", "test")},
                      "images": {s: f"data/raw/pets/{s}" for s in ("train", "valid", "test")}},
        "tagged": {"format": "csv", "annotations": "data/raw/tagged/tags.csv",
                   "images": "data/raw/tagged/images", "extension": ".png",
                   "val_fraction": 0.2, "test_fraction": 0.2},
        "xray": {"format": "onehot", "annotations": "data/raw/xray/labels.csv",
                 "images": "data/raw/xray/xrays", "non_label_columns": ["Age"],
                 "uncertain": "ignore", "missing": "negative", "val_fraction": 0.2,
                 "test_fraction": 0.2},
    }


def make_raw(repo: Path) -> None:
    coco_export(repo / "data" / "raw" / "pets")
    tag_table(repo / "data" / "raw" / "tagged")
    onehot_table(repo / "data" / "raw" / "xray")


@pytest.mark.slow
def test_three_formats_through_dvc_repro(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repository(repo)
    make_raw(repo)
    prepare = own_params(repo)
    raw_inputs = {"coco_pets": "data/raw/pets", "tagged": "data/raw/tagged/tags.csv",
                  "xray": "data/raw/xray/labels.csv"}
    text = "datasets:\n" + "".join(f"  {k}: {v}\n" for k, v in raw_inputs.items())
    # One block of shared settings, reused through YAML anchors as the README shows.
    text += "nproc: 1\nofficial: {}\n"
    text += "defaults:\n  train: &train\n" + "".join(f"    {k}: {v}\n" for k, v in TINY.items())
    text += "  embed: &embed\n    source: cooccurrence\n    dim: 8\n    epochs: 30\n"
    text += yaml.safe_dump({"prepare": prepare})
    for stage, anchor in (("embed", "*embed"), ("train", "*train"), ("evaluate", "{}"),
                          ("plots", "{}")):
        text += f"{stage}:\n" + "".join(f"  {name}: {anchor}\n" for name in prepare)
    (repo / "params.yaml").write_text(text, encoding="utf-8")
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "own data"], repo)

    targets = [f"evaluate@{name}" for name in prepare]
    first = run(["dvc", "repro", *targets], repo)
    for name in prepare:
        assert f"Running stage 'prepare@{name}'" in first.stdout
        metrics = json.loads((repo / "metrics" / f"{name}_all.json").read_text())
        assert 0.0 <= metrics["mAP"] <= 1.0 and metrics["selected_on"] == "val"
    pets = json.loads((repo / "data/prepared/coco_pets/meta.json").read_text())
    assert pets["labels"] == PETS  # the placeholder category 0 left out
    assert any("pets" in note for note in pets["notes"])
    assert (repo / "data/prepared/xray/ignore_train.npy").is_file()  # -1.0: unscored
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results"], repo)

    table = repo / "data" / "raw" / "tagged" / "tags.csv"
    rows = table.read_text().splitlines()
    rows[3] = rows[3].split(",")[0] + ",cat dog traffic_light TeddyBear"
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    status = run(["dvc", "status", "--with-deps", *targets], repo).stdout
    assert "data/raw/tagged/tags.csv" in status
    assert "coco_pets" not in status and "xray" not in status
    # what would run (--dry: the stages after prepare would follow only if its output changed)
    second = run(["dvc", "repro", "--dry", *targets], repo)
    ran = {line.split("'")[1] for line in second.stdout.splitlines()
           if line.startswith("Running stage")}
    assert "prepare@tagged" in ran
    assert all(stage.endswith("@tagged") for stage in ran), ran


def test_prepared_data_travels_with_its_images(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Prepared on one machine, copied with its images (same layout) to another folder:
    trains and evaluates there without preparing again; moved images need image_roots."""
    first, second = tmp_path / "first", tmp_path / "second"
    tag_table(first / "data" / "raw" / "tagged")
    params = {"prepare": {"tagged": own_params(first)["tagged"]},
              "embed": {"tagged": {"source": "cooccurrence", "dim": 8, "epochs": 30}},
              "train": {"tagged": TINY}}
    monkeypatch.chdir(first)
    run_prepare(dataset_params(params, "tagged"))
    lists = (first / "data/prepared/tagged/train.tsv").read_text()
    assert str(first) not in lists and lists.startswith("photo")
    shutil.copytree(first / "data", second / "data")
    shutil.rmtree(first)
    monkeypatch.chdir(second)
    settings = dataset_params(params, "tagged")
    run_embed(settings)
    result = run_train(settings, progress=False)
    assert result.selected_on == "val"
    assert 0.0 <= run_evaluate(settings, progress=False)["mAP"] <= 1.0

    moved = tmp_path / "elsewhere"
    shutil.move(second / "data/raw/tagged/images", moved)
    with pytest.raises(SalglError, match=r"image folder not found .*set image_roots.tagged"):
        load_prepared(second / "data/prepared/tagged")
    data = load_prepared(second / "data/prepared/tagged",
                         image_root=dataset_params({**params, "image_roots": {
                             "tagged": str(moved)}}, "tagged").image_root)
    assert Path(data.train.paths[0]).parent == moved


def write_params(path: Path, prepare: dict) -> Path:
    path.write_text(yaml.safe_dump({"prepare": {"mine": prepare}}), encoding="utf-8")
    return path


def broken_inputs(root: Path) -> list[tuple[dict, str]]:
    """(prepare block, the message's distinctive part) for each kind of bad input."""
    tags = tag_table(root / "tags")
    rows = tags.read_text().splitlines()
    missing = root / "missing.csv"
    missing.write_text("\n".join(rows[:5] + ["ghost,cat"]) + "\n")
    duplicate = root / "duplicate.csv"
    duplicate.write_text("\n".join(rows + [rows[2].split(",")[0] + ",dog"]) + "\n")
    empty = root / "empty.csv"
    empty.write_text("image,tags\n\n")
    coco = coco_export(root / "coco", {"train": 4})
    annotations = coco / "train" / "_annotations.coco.json"
    malformed = root / "malformed.json"
    malformed.write_text(annotations.read_text()[:-20])
    undefined = root / "undefined.json"
    data = json.loads(annotations.read_text())
    data["annotations"][2]["category_id"] = 99
    undefined.write_text(json.dumps(data))
    images = str(root / "tags" / "images")
    csv = {"format": "csv", "images": images, "extension": ".png"}
    coco_images = str(coco / "train")
    return [
        ({**csv, "annotations": str(missing)}, f"{missing}:6: image ghost.png not found"),
        ({**csv, "annotations": str(tags), "test_fraction": 0},
         "prepare.mine.test_fraction: the data has no test split, so it must be above 0"),
        ({**csv, "annotations": str(duplicate)}, f"{duplicate}:{len(rows) + 1}: image photo001"),
        ({**csv, "annotations": str(empty)}, f"{empty}: "),
        ({"format": "coco", "annotations": str(malformed), "images": coco_images},
         f"{malformed}:1: not valid JSON"),
        ({"format": "coco", "annotations": str(undefined), "images": coco_images},
         "category_id 99"),
    ]


def test_bad_input_gives_one_line_and_no_output(tmp_path: Path, salgl_main) -> None:
    for number, (block, expected) in enumerate(broken_inputs(tmp_path)):
        params = write_params(tmp_path / f"p{number}.yaml", block)
        out = tmp_path / f"out{number}"
        code, _, err = salgl_main("prepare", "mine", "--params", str(params), "--out",
                                  str(out))
        lines = [line for line in err.splitlines() if line.startswith("salgl ")]
        assert code == 2 and len(lines) == 1, err
        assert expected in lines[0], (expected, lines[0])
        assert not out.exists()


def test_prepare_help_lists_the_formats(salgl_main) -> None:
    code, text, _ = salgl_main("prepare", "--help")
    assert code == 0
    for word in ("coco", "csv", "onehot", "tags_column", "tag_separator", "uncertain",
                 "val_fraction", "test_fraction", "non_label_columns"):
        assert word in text, word


def test_labels_without_training_positives_are_named(tmp_path: Path, salgl_main) -> None:
    table = tag_table(tmp_path)
    rows = table.read_text().splitlines()
    lines = [rows[0] + ",split"] + [f"{row},{'test' if i % 4 == 0 else 'train'}"
                                    for i, row in enumerate(rows[1:])]
    lines[1] = lines[1].replace(",test", " unicorn,test")  # a label seen in testing only
    table.write_text("\n".join(lines) + "\n")
    params = write_params(tmp_path / "p.yaml", {
        "format": "csv", "annotations": str(table), "images": str(tmp_path / "images"),
        "extension": ".png", "split_column": "split"})
    code, _, err = salgl_main("prepare", "mine", "--params", str(params), "--out",
                              str(tmp_path / "o"))
    assert code == 2
    assert "prepare.mine: 1 label(s) have no positive in the training split: unicorn" in err
    assert not (tmp_path / "o").exists()


def test_images_dropped_from_each_split_file_count_in_that_split(tmp_path: Path,
                                                                 salgl_main) -> None:
    """Each split file of the export holds one image without annotation."""
    root = coco_export(tmp_path / "pets")
    splits = ("train", "valid", "test")
    params = write_params(tmp_path / "p.yaml", {
        "format": "coco", "annotations": {s: str(root / s / "_annotations.coco.json")
                                          for s in splits},
        "images": {s: str(root / s) for s in splits}})
    code, _, err = salgl_main("prepare", "mine", "--params", str(params), "--out",
                              str(tmp_path / "out"))
    assert code == 0, err
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert {split: counts["dropped_without_labels"]
            for split, counts in meta["counts"].items()} == {"train": 1, "val": 1, "test": 1}
    assert sorted(d["split"] for d in meta["dropped"]) == ["test", "train", "val"]
