"""Nothing outside what the user named is touched (issue 20): output folders are replaced
only when salgl wrote them, file outputs are regular files (or links to one), no output is an
input, and a run that labels nothing keeps the earlier result. Each refusal is one line,
exit 2, and leaves the folder tree exactly as it was."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_cli import REPO
from tree_snapshot import changes, tree_snapshot

from salgl.atomic import MARKER, MARKER_TEXT, atomic_dir
from salgl.errors import SalglError

from conftest import LABELS, TinyRun, write_embeddings
from fakes import make_prepared
from own_fixtures import tag_table

UNCHANGED = "nothing was changed"


def own_collection(root: Path) -> tuple[Path, Path, Path]:
    """A tag table with its image folder and the params file naming them: (params, images,
    table)."""
    table = tag_table(root)
    images = root / "images"
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"prepare": {"mine": {
        "format": "csv", "annotations": str(table), "images": str(images),
        "extension": ".png"}}}), encoding="utf-8")
    return params, images, table


def refused(salgl_main, root: Path, *args: str) -> str:
    """Run a command that must be refused: exit 2, one error line, nothing under ``root``
    changed; returns the line."""
    before = tree_snapshot(root)
    code, _, err = salgl_main(*args)
    lines = [line for line in err.splitlines() if line.startswith("salgl ")]
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    assert changes(before, tree_snapshot(root)) == []
    return lines[0]


def image(path: Path, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 3), value, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def model(tiny_run: TinyRun, tmp_path: Path) -> Path:
    """A copy of the tiny model in this test's folder, so the snapshot covers it."""
    return Path(shutil.copy(tiny_run.model, tmp_path / "model.safetensors"))


@contextlib.contextmanager
def fifo_reader(path: Path) -> Iterator[int]:
    """A FIFO with a reader that never blocks: a write that opens it cannot hang the test."""
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        yield fd
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- output folders


def test_prepare_into_the_own_images_folder_is_refused(tmp_path: Path, salgl_main) -> None:
    params, images, _ = own_collection(tmp_path)
    line = refused(salgl_main, tmp_path, "prepare", "mine", "--params", str(params), "--out",
                   str(images))
    assert line == (f"salgl prepare: error: {images}: is an input of this command "
                    f"(prepare.mine.images: {images}); choose another output; {UNCHANGED}")


def test_prepare_into_a_folder_holding_the_inputs_is_refused(tmp_path: Path,
                                                             salgl_main) -> None:
    params, images, _ = own_collection(tmp_path / "own")
    line = refused(salgl_main, tmp_path, "prepare", "mine", "--params", str(params), "--out",
                   str(tmp_path))
    assert line == (f"salgl prepare: error: {tmp_path}: holds an input of this command "
                    f"(prepare.mine.images: {images}); choose another output; {UNCHANGED}")


def test_prepare_into_a_folder_of_unrelated_files_is_refused(tmp_path: Path,
                                                             salgl_main) -> None:
    params, _, _ = own_collection(tmp_path / "own")
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("my work\n")
    (mine / "labels.txt").write_text("a name salgl also writes\n")
    line = refused(salgl_main, tmp_path, "prepare", "mine", "--params", str(params), "--out",
                   str(mine))
    assert line == (f"salgl prepare: error: {mine}: holds files salgl did not write (first: "
                    "chapter1.tex); an output folder is replaced only when it is empty or "
                    f"was written by salgl; {UNCHANGED}")


@pytest.mark.parametrize("command", ["prepare", "embed"])
def test_out_dot_is_refused(command: str, tmp_path: Path, salgl_main,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    params, _, _ = own_collection(tmp_path / "own")
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine\n")
    monkeypatch.chdir(work)
    extra = ["--prepared", str(tmp_path / "prepared")] if command == "embed" else []
    line = refused(salgl_main, tmp_path, command, "mine", "--params", str(params), *extra,
                   "--out", ".")
    assert line == (f"salgl {command}: error: .: is the current folder or holds it; an output "
                    f"folder is replaced as a whole, so name a folder inside it; {UNCHANGED}")


def test_prepare_into_a_file_is_refused(tmp_path: Path, salgl_main) -> None:
    params, _, _ = own_collection(tmp_path / "own")
    note = tmp_path / "note.txt"
    note.write_text("mine\n")
    line = refused(salgl_main, tmp_path, "prepare", "mine", "--params", str(params), "--out",
                   str(note))
    assert line == f"salgl prepare: error: {note}: is a regular file, not a folder; {UNCHANGED}"


def test_prepare_replaces_its_own_and_legacy_outputs(tmp_path: Path, salgl_main) -> None:
    """A second run replaces the first (marker); an output of a salgl version without the
    marker (DVC keeps it: persist: true) is replaced too, and gets the marker."""
    params, _, _ = own_collection(tmp_path / "own")
    out = tmp_path / "prepared"
    args = ("prepare", "mine", "--params", str(params), "--out", str(out))
    assert salgl_main(*args)[0] == 0
    assert (out / MARKER).read_text(encoding="utf-8") == MARKER_TEXT
    first = tree_snapshot(out)
    (out / "stale.tsv").write_text("left by hand\n")  # the marker says: salgl's folder
    assert salgl_main(*args)[0] == 0
    assert not (out / "stale.tsv").exists()
    assert {p: s[:4] for p, s in tree_snapshot(out).items()} == \
        {p: s[:4] for p, s in first.items()}  # same files, same bytes (new inodes)
    (out / MARKER).unlink()
    (out / "scenes.tsv").write_text("image_path\tsplit\tscene_index\tscene_name\n")
    assert salgl_main(*args)[0] == 0
    assert (out / MARKER).is_file() and not (out / "scenes.tsv").exists()


def test_legacy_fashion_scenes_folder_is_replaced_and_a_link_kept(tmp_path: Path) -> None:
    real = tmp_path / "disk" / "prepared"
    image(real / "images" / "train" / "000000.png")
    (real / "labels.txt").write_text("a\n")
    link = tmp_path / "prepared"
    link.symlink_to(real)
    with atomic_dir(link, "prepared") as tmp:
        (tmp / "labels.txt").write_text("b\n")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert sorted(p.name for p in real.iterdir()) == [MARKER, "labels.txt"]
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["prepared"]
    (real / "images").mkdir()
    (real / "images" / "holiday.jpg").write_bytes(b"mine")
    (real / MARKER).unlink()
    before = tree_snapshot(tmp_path)
    with pytest.raises(SalglError, match=r"holds files salgl did not write \(first: "
                       r"images/holiday.jpg\)"), atomic_dir(link, "prepared"):
        pass
    assert changes(before, tree_snapshot(tmp_path)) == []


def test_embed_into_its_prepared_folder_is_refused(tmp_path: Path, salgl_main) -> None:
    params, _, _ = own_collection(tmp_path / "own")
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=4, n_test=2)
    line = refused(salgl_main, tmp_path, "embed", "mine", "--params", str(params),
                   "--prepared", str(prepared), "--out", str(prepared))
    assert line == (f"salgl embed: error: {prepared}: is an input of this command (the "
                    f"prepared folder: {prepared}); choose another output; {UNCHANGED}")


def test_train_into_the_prepared_folder_is_refused_before_training(tmp_path: Path,
                                                                   salgl_main) -> None:
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=4, n_test=2)
    embeddings = write_embeddings(prepared, tmp_path / "embeddings")
    (tmp_path / "params.yaml").write_text("datasets: [fashion_scenes]\n")
    model_out = prepared / "model.safetensors"
    line = refused(salgl_main, tmp_path, "train", "fashion_scenes", "--params",
                   str(tmp_path / "params.yaml"), "--prepared", str(prepared), "--embeddings",
                   str(embeddings), "--out", str(model_out), "--state", str(tmp_path / "s"),
                   "--live", str(tmp_path / "l"))
    assert line == (f"salgl train: error: {model_out}: lies inside an input of this command "
                    f"(the prepared folder: {prepared}); choose another output; {UNCHANGED}")


# --------------------------------------------------------------------------- predict -o


def test_predict_onto_the_model_is_refused(model: Path, tmp_path: Path, salgl_main) -> None:
    photo = image(tmp_path / "photo.png")
    line = refused(salgl_main, tmp_path, "predict", str(model), str(photo), "-o", str(model))
    assert line == (f"salgl predict: error: {model}: is an input of this command (the model: "
                    f"{model}); choose another output; {UNCHANGED}")


def test_predict_onto_an_input_image_or_list_is_refused(model: Path, tmp_path: Path,
                                                        salgl_main) -> None:
    photo = image(tmp_path / "photos" / "photo.png")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photo}\n")
    line = refused(salgl_main, tmp_path, "predict", str(model), str(listing), "-o",
                   str(listing))
    assert line == (f"salgl predict: error: {listing}: is an input of this command (PATH: "
                    f"{listing}); choose another output; {UNCHANGED}")
    line = refused(salgl_main, tmp_path, "predict", str(model), str(tmp_path / "photos"),
                   "-o", str(photo))
    assert line == (f"salgl predict: error: {photo}: is an input of this command (an image "
                    f"to label: {photo}); choose another output; {UNCHANGED}")


def test_predict_through_a_link_replaces_its_target_and_keeps_the_link(
        model: Path, tmp_path: Path, salgl_main) -> None:
    photo = image(tmp_path / "photo.png")
    target = tmp_path / "results" / "labels.jsonl"
    target.parent.mkdir()
    target.write_text("earlier\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    before = tree_snapshot(tmp_path)
    code, out, err = salgl_main("predict", str(model), str(photo), "-o", str(link))
    assert code == 0, err
    assert out == ""
    assert changes(before, tree_snapshot(tmp_path)) == ["changed results/labels.jsonl"]
    assert os.readlink(link) == str(target)
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["path"] for r in records] == [str(photo)]


def test_predict_through_a_link_to_a_fifo_is_refused(model: Path, tmp_path: Path,
                                                     salgl_main) -> None:
    photo = image(tmp_path / "photo.png")
    fifo, link = tmp_path / "pipe", tmp_path / "out.jsonl"
    with fifo_reader(fifo) as reader:
        link.symlink_to(fifo)
        line = refused(salgl_main, tmp_path, "predict", str(model), str(photo), "-o",
                       str(link))
        assert os.read(reader, 100) == b""  # nothing was written through it
    assert line == (f"salgl predict: error: {link}: is a link to {fifo}, which is a FIFO, not "
                    f"a regular file; {UNCHANGED}")


def test_predict_through_a_link_into_dvc_cache_is_refused(model: Path, tmp_path: Path,
                                                         salgl_main) -> None:
    """DVC's symlink cache type links outputs to cached objects that other commits share."""
    photo = image(tmp_path / "photo.png")
    cached = tmp_path / "repo" / ".dvc" / "cache" / "files" / "md5" / "ab" / "cdef"
    cached.parent.mkdir(parents=True)
    cached.write_text("a cached output\n")
    link = tmp_path / "repo" / "labels.jsonl"
    link.symlink_to(cached)
    line = refused(salgl_main, tmp_path, "predict", str(model), str(photo), "-o", str(link))
    assert line == (f"salgl predict: error: {link}: is a link into DVC's cache ({cached}); run "
                    f"`dvc unprotect {link}` first; {UNCHANGED}")


def test_predict_onto_a_fifo_is_refused(model: Path, tmp_path: Path, salgl_main) -> None:
    photo = image(tmp_path / "photo.png")
    fifo = tmp_path / "pipe"
    with fifo_reader(fifo) as reader:
        line = refused(salgl_main, tmp_path, "predict", str(model), str(photo), "-o",
                       str(fifo))
        assert os.read(reader, 100) == b""
    assert line == f"salgl predict: error: {fifo}: is a FIFO, not a regular file; {UNCHANGED}"


def test_predict_through_a_dangling_link_is_refused(model: Path, tmp_path: Path,
                                                    salgl_main) -> None:
    photo = image(tmp_path / "photo.png")
    link, nowhere = tmp_path / "out.jsonl", tmp_path / "gone" / "out.jsonl"
    link.symlink_to(nowhere)
    line = refused(salgl_main, tmp_path, "predict", str(model), str(photo), "-o", str(link))
    assert line == (f"salgl predict: error: {link}: is a link to {nowhere}, which does not "
                    f"exist; {UNCHANGED}")


def test_predict_onto_a_folder_is_refused(model: Path, tmp_path: Path, salgl_main) -> None:
    photo = image(tmp_path / "photo.png")
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "old.jsonl").write_text("mine\n")
    line = refused(salgl_main, tmp_path, "predict", str(model), str(photo), "-o", str(folder))
    assert line == (f"salgl predict: error: {folder}: is a folder, not a regular file; "
                    f"{UNCHANGED}")


def test_predict_dash_writes_standard_output(model: Path, tmp_path: Path, salgl_main,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    photo = image(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    before = tree_snapshot(tmp_path)
    code, out, err = salgl_main("predict", str(model), str(photo), "-o", "-")
    assert code == 0, err
    assert [json.loads(line)["path"] for line in out.splitlines()] == [str(photo)]
    assert changes(before, tree_snapshot(tmp_path)) == []  # no file named "-"


def test_a_run_that_labels_nothing_keeps_the_earlier_result(model: Path, tmp_path: Path,
                                                           salgl_main) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    earlier = tmp_path / "labels.jsonl"
    earlier.write_text('{"earlier": true}\n')
    before = tree_snapshot(tmp_path)
    code, out, err = salgl_main("predict", str(model), str(broken), "-o", str(earlier))
    assert code == 1 and out == ""
    assert f"salgl predict: skipped {broken}: " in err
    assert (f"salgl predict: none of the 1 inputs could be labelled; {earlier} was left as "
            "it was") in err.splitlines()
    assert changes(before, tree_snapshot(tmp_path)) == []


# --------------------------------------------------------------------------- predict inputs


def test_a_fifo_input_is_skipped_without_opening_it(model: Path, tmp_path: Path) -> None:
    """In a process of its own with a time limit: opening the FIFO would block forever."""
    photo = image(tmp_path / "photo.png")
    fifo = tmp_path / "camera.png"
    os.mkfifo(fifo)
    listed = tmp_path / "listed.png"
    os.mkfifo(listed)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{listed}\n")
    env = {**os.environ, "SALGL_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "salgl.cli", "-q", "predict", str(model),
                             str(fifo), str(listing), str(photo)], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 1, result.stderr
    assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == [str(photo)]
    for path in (fifo, listed):
        assert (f"salgl predict: skipped {path}: a FIFO, not a regular file (not opened)"
                in result.stderr.splitlines())
    assert "Traceback" not in result.stderr


def test_a_path_list_that_is_not_utf8_is_one_line(model: Path, tmp_path: Path,
                                                  salgl_main) -> None:
    photo = image(tmp_path / "photo.png")
    listing = tmp_path / "list.txt"
    listing.write_bytes(f"{photo}\n".encode() + b"caf\xe9.png\n")
    line = refused(salgl_main, tmp_path, "predict", str(model), str(listing))
    assert line == (f"salgl predict: error: {listing}:2: not UTF-8 text (a path list holds "
                    "one UTF-8 path per line)")


# --------------------------------------------------------------------------- export


def test_export_onto_the_model_is_refused_before_loading(tmp_path: Path, salgl_main) -> None:
    pytest.importorskip("onnx")
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"not a model: loading it would fail with another message")
    line = refused(salgl_main, tmp_path, "export", str(model), "--onnx", str(model))
    assert line == (f"salgl export: error: {model}: is an input of this command (the model: "
                    f"{model}); choose another output; {UNCHANGED}")


def test_export_onto_a_folder_is_refused(model: Path, tmp_path: Path, salgl_main) -> None:
    pytest.importorskip("onnx")
    folder = tmp_path / "onnx"
    folder.mkdir()
    line = refused(salgl_main, tmp_path, "export", str(model), "--onnx", str(folder))
    assert line == (f"salgl export: error: {folder}: is a folder, not a regular file; "
                    f"{UNCHANGED}")
