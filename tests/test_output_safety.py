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
from test_cli import REPO, tiny_params
from tree_snapshot import changes, tree_snapshot

from salgl.atomic import atomic_dir
from salgl.errors import SalglError
from salgl.output_rules import FIRST_MARKER_TEXT, MARKER, MARKER_HEADER, STATE_NOTES

from conftest import LABELS, TinyRun, write_embeddings
from fakes import make_prepared
from own_fixtures import tag_table

UNCHANGED = "nothing was changed"
WHOLE_RULE = ("an output folder is replaced only when it holds nothing but what salgl wrote "
              "there")
INTO_RULE = ("salgl writes into an output folder only when it holds nothing but what salgl "
             "writes there")


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
    """Run a command that must be refused: exit 2, one error line, nothing printed and
    nothing under ``root`` changed; returns the line."""
    before = tree_snapshot(root)
    code, out, err = salgl_main(*args)
    lines = [line for line in err.splitlines() if line.startswith("salgl ")]
    assert code == 2 and len(lines) == 1 and out == "", err
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
                    f"chapter1.tex); {WHOLE_RULE}; {UNCHANGED}")


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
    """A second run replaces the first (its marker lists every entry); so does a run over a
    folder from which the user only removed files; an output of a salgl version without
    the marker (DVC keeps it: persist: true), or with the first marker, which listed
    nothing, is replaced too, and gets the marker."""
    params, _, _ = own_collection(tmp_path / "own")
    out = tmp_path / "prepared"
    args = ("prepare", "mine", "--params", str(params), "--out", str(out))
    assert salgl_main(*args)[0] == 0
    entries = sorted(p.relative_to(out).as_posix() + ("/" if p.is_dir() else "")
                     for p in out.rglob("*") if p.name != MARKER)
    assert (out / MARKER).read_text(encoding="utf-8") == \
        "".join(f"{line}\n" for line in [MARKER_HEADER, *entries])
    first = tree_snapshot(out)
    (out / "val.tsv").unlink()  # removing what salgl wrote keeps the folder salgl's
    assert salgl_main(*args)[0] == 0
    assert {p: s[:4] for p, s in tree_snapshot(out).items()} == \
        {p: s[:4] for p, s in first.items()}  # same files, same bytes (new inodes)
    (out / MARKER).unlink()
    (out / "scenes.tsv").write_text("image_path\tsplit\tscene_index\tscene_name\n")
    assert salgl_main(*args)[0] == 0
    assert (out / MARKER).is_file() and not (out / "scenes.tsv").exists()
    (out / MARKER).write_text(FIRST_MARKER_TEXT, encoding="utf-8")
    assert salgl_main(*args)[0] == 0
    assert (out / MARKER).read_text(encoding="utf-8").startswith(MARKER_HEADER + "\n")


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


# --------------------------------------------------------------------------- train: --state, --live


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A tiny prepared dataset, its label vectors and a train params file: (params,
    prepared, embeddings)."""
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=16, n_test=4)
    embeddings = write_embeddings(prepared, tmp_path / "emb")
    return tiny_params(tmp_path / "params.yaml"), prepared, embeddings


def train_command(dataset: tuple[Path, Path, Path], out: Path | str, state: Path | str,
                  live: Path | str) -> list[str]:
    params, prepared, embeddings = dataset
    return ["train", "fashion_scenes", "--params", str(params), "--prepared", str(prepared),
            "--embeddings", str(embeddings), "--out", str(out), "--state", str(state),
            "--live", str(live)]


def test_train_live_dot_is_refused(dataset: tuple[Path, Path, Path], tmp_path: Path,
                                   salgl_main, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--live .` once deleted the working folder's files (publish removed what it had not
    staged): the folder holding the inputs, and any folder holding the current one."""
    monkeypatch.chdir(tmp_path)
    relative = (Path("params.yaml"), Path("prepared"), Path("emb"))
    line = refused(salgl_main, tmp_path, *train_command(relative, "m.safetensors", "s", "."))
    assert line == ("salgl train: error: .: holds an input of this command (the prepared "
                    f"folder: prepared); choose another output; {UNCHANGED}")
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine\n")
    monkeypatch.chdir(work)
    line = refused(salgl_main, tmp_path, *train_command(dataset, tmp_path / "m.safetensors",
                                                        tmp_path / "s", "."))
    assert line == ("salgl train: error: .: is the current folder or holds it; an output "
                    "folder holds only what salgl writes there, so name a folder inside it; "
                    f"{UNCHANGED}")


@pytest.mark.parametrize("stranger", ["README.txt", ".draft.tmp", "live/precious.txt",
                                      "live/plots/metrics/live/train/lr.tsv.bak"])
def test_train_state_folder_with_the_users_files_is_refused(
        stranger: str, dataset: tuple[Path, Path, Path], tmp_path: Path, salgl_main) -> None:
    """The user's README.txt (salgl's holds one of its notes), a temporary file salgl did
    not leave, a file in the staged curves: once overwritten, deleted, copied and removed."""
    state = tmp_path / "state"
    (state / stranger).parent.mkdir(parents=True, exist_ok=True)
    (state / stranger).write_text("mine\n")
    line = refused(salgl_main, tmp_path, *train_command(dataset, tmp_path / "m.safetensors",
                                                        state, tmp_path / "live"))
    assert line == (f"salgl train: error: {state}: holds files salgl did not write (first: "
                    f"{stranger}); {INTO_RULE}; {UNCHANGED}")


def test_train_live_folder_with_the_users_files_is_refused(dataset: tuple[Path, Path, Path],
                                                           tmp_path: Path, salgl_main) -> None:
    live = tmp_path / "live"
    (live / "plots" / "images").mkdir(parents=True)
    (live / "metrics.json").write_text("{}\n")
    (live / "plots" / "images" / "holiday.png").write_bytes(b"mine")
    line = refused(salgl_main, tmp_path, *train_command(dataset, tmp_path / "m.safetensors",
                                                        tmp_path / "s", live))
    assert line == (f"salgl train: error: {live}: holds files salgl did not write (first: "
                    f"plots/images); {INTO_RULE}; {UNCHANGED}")


def test_train_state_and_live_apart_from_the_inputs(dataset: tuple[Path, Path, Path],
                                                    tmp_path: Path, salgl_main) -> None:
    params, prepared, _ = dataset
    inside = prepared / "live"
    line = refused(salgl_main, tmp_path, *train_command(dataset, tmp_path / "m.safetensors",
                                                        tmp_path / "s", inside))
    assert line == (f"salgl train: error: {inside}: lies inside an input of this command (the "
                    f"prepared folder: {prepared}); choose another output; {UNCHANGED}")
    line = refused(salgl_main, tmp_path, *train_command(dataset, tmp_path / "m.safetensors",
                                                        tmp_path, tmp_path / "l"))
    assert line == (f"salgl train: error: {tmp_path}: holds an input of this command (the "
                    f"prepared folder: {prepared}); choose another output; {UNCHANGED}")


def test_train_keeps_salgl_folders_of_earlier_versions_and_removes_only_its_own(
        dataset: tuple[Path, Path, Path], tmp_path: Path, salgl_main) -> None:
    """A state folder with an earlier version's note and a killed write's temporary file and
    a live folder with curves logged under earlier names are salgl's: training runs, and
    afterwards only salgl's own files are gone from them."""
    state, live = tmp_path / "state", tmp_path / "live"
    state.mkdir()
    (state / "README.txt").write_text(STATE_NOTES[1], encoding="utf-8")
    (state / ".last.safetensors.ab12cd_9.tmp").write_bytes(b"half a state")
    (live / "plots" / "metrics" / "train").mkdir(parents=True)
    (live / "plots" / "metrics" / "train" / "lr.tsv").write_text("timestamp\tstep\tlr\n")
    code, _, err = salgl_main(*train_command(dataset, tmp_path / "m.safetensors", state, live))
    assert code == 0, err
    assert sorted(p.name for p in state.iterdir()) == ["README.txt"]
    assert (state / "README.txt").read_text(encoding="utf-8") == STATE_NOTES[0]
    assert not (live / "plots" / "metrics" / "train").exists()
    assert (live / "plots" / "metrics" / "live" / "train" / "lr.tsv").is_file()


def test_publish_and_finish_remove_only_what_salgl_wrote(tmp_path: Path) -> None:
    """What appears in a live or state folder while training runs (the check before it
    refuses such folders) is never removed: only salgl's files, never through a link."""
    from salgl.logging_live import publish
    from salgl.resume import ResumeState

    outside = tmp_path / "outside.tsv"
    outside.write_text("the user's\n")
    state = tmp_path / "state"
    staged = state / "live" / "plots" / "metrics" / "live" / "train"
    staged.mkdir(parents=True)
    (staged / "lr.tsv").write_text("step\tlr\n0\t0.1\n")
    (state / "live" / "notes.txt").write_text("mine\n")
    (state / "last.safetensors").write_bytes(b"state")
    live = tmp_path / "live"
    old = live / "plots" / "metrics" / "train"
    old.mkdir(parents=True)
    (old / "lr.tsv").write_text("an earlier version's curve\n")
    (old / "mine.txt").write_text("mine\n")
    (live / "plots" / "metrics" / "link.tsv").symlink_to(outside)
    publish(state / "live", live)
    assert (live / "plots/metrics/live/train/lr.tsv").read_text() == "step\tlr\n0\t0.1\n"
    assert sorted(p.name for p in old.iterdir()) == ["mine.txt"]
    assert (live / "plots" / "metrics" / "link.tsv").is_symlink()
    assert not (live / "notes.txt").exists()  # not salgl's: not copied either
    ResumeState(state, "fingerprint").finish()
    assert sorted(p.relative_to(state).as_posix() for p in state.rglob("*")) == \
        ["live", "live/notes.txt"]
    assert outside.read_text() == "the user's\n"


# --------------------------------------------------------------------------- plots --out, inputs


@pytest.fixture
def plots_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The plots stage's inputs at their places (contents never read: every refusal comes
    first), from a working folder ``tmp_path``; the command's arguments."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"a model")
    (tmp_path / "predictions.npz").write_bytes(b"predictions")
    table = tmp_path / "plots" / "fashion_scenes" / "eval" / "per_label_ap.csv"
    table.parent.mkdir(parents=True)
    table.write_text("label,ap\n")
    (tmp_path / "params.yaml").write_text("datasets: [fashion_scenes]\n")
    return ["plots", "fashion_scenes", "--params", "params.yaml", "--model",
            "model.safetensors", "--predictions", "predictions.npz"]


def test_plots_into_a_folder_of_the_users_files_is_refused(plots_inputs: list[str],
                                                           tmp_path: Path, salgl_main) -> None:
    figures = tmp_path / "figs"
    figures.mkdir()
    (figures / "per_label_ap.png").write_bytes(b"a figure of salgl's name")
    (figures / "poster.png").write_bytes(b"mine")
    line = refused(salgl_main, tmp_path, *plots_inputs, "--out", "figs")
    assert line == (f"salgl plots: error: figs: holds files salgl did not write (first: "
                    f"poster.png); {INTO_RULE}; {UNCHANGED}")


def test_plots_with_a_link_in_the_figures_folder_is_refused(plots_inputs: list[str],
                                                            tmp_path: Path, salgl_main) -> None:
    """`pr` (where earlier versions wrote per-label series) linked to a folder of the user's:
    once removed through the link, then a traceback after some figures were written."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "cat.csv").write_text("mine\n")
    figures = tmp_path / "figs"
    figures.mkdir()
    (figures / "pr_curves.csv").write_text("recall,precision\n")
    (figures / "pr").symlink_to(elsewhere)
    line = refused(salgl_main, tmp_path, *plots_inputs, "--out", "figs")
    assert line == (f"salgl plots: error: figs: holds files salgl did not write (first: pr, "
                    f"a link); {INTO_RULE}; {UNCHANGED}")


def test_plots_without_the_per_label_table_names_it_and_its_stage(
        plots_inputs: list[str], tmp_path: Path, salgl_main) -> None:
    table = Path("plots/fashion_scenes/eval/per_label_ap.csv")
    (tmp_path / table).unlink()
    line = refused(salgl_main, tmp_path, *plots_inputs)
    assert line == (f"salgl plots: error: {table}: not found (the per-label AP table, written "
                    "by `salgl evaluate fashion_scenes`)")


# --------------------------------------------------------------------------- evaluate


@pytest.fixture
def evaluate_command(tmp_path: Path) -> list[str]:
    """An evaluate command whose inputs are never read (every refusal comes first)."""
    (tmp_path / "model.safetensors").write_bytes(b"a model")
    (tmp_path / "params.yaml").write_text("datasets: [fashion_scenes]\n")
    return ["evaluate", "fashion_scenes", "--params", str(tmp_path / "params.yaml"),
            "--model", str(tmp_path / "model.safetensors"), "--prepared",
            str(tmp_path / "prepared")]


def test_evaluate_never_writes_through_a_link_in_its_tables_folder(
        evaluate_command: list[str], tmp_path: Path, salgl_main) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text("the user's table\n")
    tables = tmp_path / "eval"
    tables.mkdir()
    (tables / "per_label_ap.csv").symlink_to("../outside.csv")
    line = refused(salgl_main, tmp_path, *evaluate_command, "--eval-dir", str(tables),
                   "--metrics", str(tmp_path / "m.json"), "--predictions",
                   str(tmp_path / "p.npz"))
    assert line == (f"salgl evaluate: error: {tables}: holds files salgl did not write (first: "
                    f"per_label_ap.csv, a link); {INTO_RULE}; {UNCHANGED}")


def test_evaluate_with_a_folder_of_a_tables_name_is_refused(evaluate_command: list[str],
                                                             tmp_path: Path,
                                                             salgl_main) -> None:
    """salgl writes per_label_ap.csv as a file: a folder of that name is not salgl's."""
    tables = tmp_path / "eval"
    (tables / "per_label_ap.csv").mkdir(parents=True)
    line = refused(salgl_main, tmp_path, *evaluate_command, "--eval-dir", str(tables),
                   "--metrics", str(tmp_path / "m.json"), "--predictions",
                   str(tmp_path / "p.npz"))
    assert line == (f"salgl evaluate: error: {tables}: holds files salgl did not write (first: "
                    f"per_label_ap.csv); {INTO_RULE}; {UNCHANGED}")


def test_evaluate_with_a_fifo_in_its_tables_folder_is_refused_before_evaluating(
        evaluate_command: list[str], tmp_path: Path, salgl_main) -> None:
    """It once evaluated and wrote per_label_ap.csv, then said "nothing was changed"."""
    tables = tmp_path / "eval"
    tables.mkdir()
    with fifo_reader(tables / "scene_usage.csv") as reader:
        line = refused(salgl_main, tmp_path, *evaluate_command, "--eval-dir", str(tables),
                       "--metrics", str(tmp_path / "m.json"), "--predictions",
                       str(tmp_path / "p.npz"))
        assert os.read(reader, 100) == b""
    assert line == (f"salgl evaluate: error: {tables}: holds files salgl did not write (first: "
                    f"scene_usage.csv, a FIFO); {INTO_RULE}; {UNCHANGED}")


# --------------------------------------------------------------------------- outputs = inputs


def released_experiment(root: Path) -> tuple[Path, Path]:
    """A released experiment's layout (contents never read: every refusal comes first)
    and a labels file: (EXP, labels)."""
    exp = root / "exp"
    (exp / "checkpoints").mkdir(parents=True)
    (exp / "config.yaml").write_text("backbone: resnet101\n")
    (exp / "checkpoints" / "ema_best_model.pth").write_bytes(b"not a checkpoint")
    labels = root / "labels.txt"
    labels.write_text("cat\ndog\n")
    return exp, labels


def test_import_official_onto_its_inputs_is_refused(tmp_path: Path, salgl_main) -> None:
    exp, labels = released_experiment(tmp_path)
    line = refused(salgl_main, tmp_path, "import-official", "--labels", str(labels), str(exp),
                   str(labels))
    assert line == (f"salgl import-official: error: {labels}: is an input of this command (the "
                    f"labels file: {labels}); choose another output; {UNCHANGED}")
    checkpoint = exp / "checkpoints" / "ema_best_model.pth"
    line = refused(salgl_main, tmp_path, "import-official", "--labels", str(labels), str(exp),
                   str(checkpoint))
    assert line == (f"salgl import-official: error: {checkpoint}: is an input of this command "
                    f"(the released checkpoint: {checkpoint}); choose another output; "
                    f"{UNCHANGED}")


def test_outputs_onto_the_params_file_are_refused(dataset: tuple[Path, Path, Path],
                                                  evaluate_command: list[str], tmp_path: Path,
                                                  salgl_main) -> None:
    """headroom --out, evaluate --metrics and train --out once replaced the params file
    they read; a second name of it (a hard link) is no way around."""
    params = tmp_path / "params.yaml"
    expected = (f"{params}: is an input of this command (the params file: {params}); choose "
                f"another output; {UNCHANGED}")
    line = refused(salgl_main, tmp_path, "headroom", "--params", str(params), "--signal", "1",
                   "--out", str(params))
    assert line == f"salgl headroom: error: {expected}"
    line = refused(salgl_main, tmp_path, *evaluate_command, "--metrics", str(params))
    assert line == f"salgl evaluate: error: {expected}"
    line = refused(salgl_main, tmp_path, *train_command(dataset, params, tmp_path / "s",
                                                        tmp_path / "l"))
    assert line == f"salgl train: error: {expected}"
    second = tmp_path / "second-name.json"
    os.link(params, second)
    line = refused(salgl_main, tmp_path, *evaluate_command, "--metrics", str(second))
    assert line == (f"salgl evaluate: error: {second}: is an input of this command (the params "
                    f"file: {params}); choose another output; {UNCHANGED}")


def test_prepare_into_the_folder_of_its_params_file_is_refused(tmp_path: Path,
                                                               salgl_main) -> None:
    own_params, _, _ = own_collection(tmp_path / "own")
    folder = tmp_path / "om"
    folder.mkdir()
    params = Path(shutil.copy(own_params, folder / "params.yaml"))
    line = refused(salgl_main, tmp_path, "prepare", "mine", "--params", str(params), "--out",
                   str(folder))
    assert line == (f"salgl prepare: error: {folder}: holds an input of this command (the "
                    f"params file: {params}); choose another output; {UNCHANGED}")


def test_two_outputs_of_one_command_must_be_apart(dataset: tuple[Path, Path, Path],
                                                  evaluate_command: list[str], tmp_path: Path,
                                                  salgl_main) -> None:
    same = tmp_path / "same.out"
    line = refused(salgl_main, tmp_path, *evaluate_command, "--metrics", str(same),
                   "--predictions", str(same))
    assert line == (f"salgl evaluate: error: {same}: is another output of this command "
                    f"(--metrics: {same}); choose another output; {UNCHANGED}")
    tables = tmp_path / "eval"
    inside = tables / "per_label_ap.csv"
    line = refused(salgl_main, tmp_path, *evaluate_command, "--metrics", str(inside),
                   "--eval-dir", str(tables))
    assert line == (f"salgl evaluate: error: {tables}: holds another output of this command "
                    f"(--metrics: {inside}); choose another output; {UNCHANGED}")
    state = tmp_path / "s"
    line = refused(salgl_main, tmp_path, *train_command(dataset, state / "model.safetensors",
                                                        state, tmp_path / "l"))
    assert line == (f"salgl train: error: {state}: holds another output of this command "
                    f"(--out: {state / 'model.safetensors'}); choose another output; "
                    f"{UNCHANGED}")


# --------------------------------------------------------------------------- checked before work


def test_train_onto_a_fifo_live_folder_is_refused_before_training(
        dataset: tuple[Path, Path, Path], tmp_path: Path, salgl_main) -> None:
    """It once trained, wrote the state folder, then said "nothing was changed"."""
    fifo = tmp_path / "live"
    with fifo_reader(fifo):
        line = refused(salgl_main, tmp_path, *train_command(
            dataset, tmp_path / "m.safetensors", tmp_path / "state", fifo))
    assert line == f"salgl train: error: {fifo}: is a FIFO, not a folder; {UNCHANGED}"


def test_headroom_onto_a_folder_is_refused_before_computing(tmp_path: Path) -> None:
    """It once logged its result line, then the error. Not quiet, in a process of its own:
    the log lines are what shows whether the work was done."""
    (tmp_path / "params.yaml").write_text("datasets: [fashion_scenes]\n")
    folder = tmp_path / "results"
    folder.mkdir()
    before = tree_snapshot(tmp_path)
    env = {**os.environ, "SALGL_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "salgl.cli", "headroom", "--params",
                             str(tmp_path / "params.yaml"), "--signal", "1", "--images", "100",
                             "--out", str(folder)], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"salgl headroom: error: {folder}: is a folder, not "
                                          f"a regular file; {UNCHANGED}"]
    assert changes(before, tree_snapshot(tmp_path)) == []


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_import_official_onto_a_folder_or_fifo_is_refused_before_loading(
        kind: str, tmp_path: Path, salgl_main) -> None:
    """The checkpoint is no checkpoint: loading it first would give another message."""
    exp, labels = released_experiment(tmp_path)
    out = tmp_path / "out"
    with contextlib.ExitStack() as stack:
        if kind == "folder":
            out.mkdir()
        else:
            stack.enter_context(fifo_reader(out))
        line = refused(salgl_main, tmp_path, "import-official", "--labels", str(labels),
                       str(exp), str(out))
    what = "a folder" if kind == "folder" else "a FIFO"
    assert line == (f"salgl import-official: error: {out}: is {what}, not a regular file; "
                    f"{UNCHANGED}")


# --------------------------------------------------------------------------- the marker's record


def test_a_copied_prepared_folder_with_the_users_notes_is_not_replaced(tmp_path: Path,
                                                                       salgl_main) -> None:
    """`cp -r prepared om2; echo mine > om2/my_notes.txt; salgl prepare ... --out om2`: the
    copied marker does not list the note, so the folder is not salgl's to replace."""
    params, _, _ = own_collection(tmp_path / "own")
    prepared = tmp_path / "prepared"
    assert salgl_main("prepare", "mine", "--params", str(params), "--out", str(prepared))[0] == 0
    copy = Path(shutil.copytree(prepared, tmp_path / "om2"))
    (copy / "my_notes.txt").write_text("mine\n")
    line = refused(salgl_main, tmp_path, "prepare", "mine", "--params", str(params), "--out",
                   str(copy))
    assert line == (f"salgl prepare: error: {copy}: holds files salgl did not write (first: "
                    f"my_notes.txt); {WHOLE_RULE}; {UNCHANGED}")


# --------------------------------------------------------------------------- long paths


def test_a_huge_path_is_cut_in_the_message_and_a_read_is_not_called_a_write(
        tmp_path: Path, salgl_main) -> None:
    (tmp_path / "params.yaml").write_text("datasets: [fashion_scenes]\n")
    huge = str(tmp_path / ("d/" * 65_000 + "x.json"))  # 130 KB
    line = refused(salgl_main, tmp_path, "headroom", "--params", str(tmp_path / "params.yaml"),
                   "--signal", "1", "--out", huge)
    assert line == (f"salgl headroom: error: {huge[:200]}...: cannot write (File name too "
                    "long); earlier outputs are unchanged")
    line = refused(salgl_main, tmp_path, "metrics", huge)
    assert line == (f"salgl metrics: error: {huge[:200]}...: cannot be used (File name too "
                    "long); earlier outputs are unchanged")
