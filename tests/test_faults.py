"""Faults and bad inputs a user meets: each gives one clear line, a documented exit code and
no lost output (issue: reliability). Everything runs through the real command line."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_cli import REPO, error_line, salgl, tiny_params, train_args

from salgl.atomic import atomic_dir, atomic_path, current_umask
from salgl.checkpoint import load_model
from salgl.data.decode import ImageReadError, open_rgb
from salgl.errors import SalglError

from conftest import LABELS, TinyRun, write_embeddings
from fakes import make_prepared

# --------------------------------------------------------------------------- inputs


def exif_rotated_jpeg(path: Path) -> Path:
    """A 40 x 20 (wide) picture stored with EXIF orientation 6: shown upright, it is tall."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    return path


def sixteen_bit_gradient(path: Path) -> Path:
    """A 16-bit greyscale PNG whose values run over the whole 0..65535 range."""
    values = np.linspace(0, 65535, 256 * 16).round().astype(np.uint16).reshape(16, 256)
    Image.fromarray(values).save(path, format="PNG")
    return path


def decompression_bomb(path: Path) -> Path:
    """14000 x 14000 pixels in a file of a few hundred KB, as in the report."""
    Image.new("1", (14000, 14000)).save(path, format="PNG")
    return path


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = open_rgb(str(exif_rotated_jpeg(tmp_path / "phone.jpg")))
    assert image.size == (20, 40)  # upright: tall, as a viewer shows it
    top, bottom = np.asarray(image)[2, 10], np.asarray(image)[-3, 10]
    assert top[0] > 200 and bottom[2] < 60 and bottom[0] < 60  # red half on top after turning


def test_sixteen_bit_values_are_scaled_not_clipped(tmp_path: Path) -> None:
    grey = np.asarray(open_rgb(str(sixteen_bit_gradient(tmp_path / "scan.png"))))[..., 0]
    assert grey.min() == 0 and grey.max() == 255
    assert (grey == 255).mean() < 0.01  # clipping made 99.6% of it white
    assert len(np.unique(grey)) == 256


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # fully transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    assert (np.asarray(open_rgb(str(tmp_path / "clear.png"))) == 255).all()


def test_reasons_do_not_repeat_the_path(tmp_path: Path) -> None:
    bomb = decompression_bomb(tmp_path / "bomb.png")
    with pytest.raises(ImageReadError) as caught:
        open_rgb(str(bomb))
    assert "too large" in caught.value.reason and str(bomb) not in caught.value.reason
    assert str(caught.value).startswith(f"{bomb}: ")


# --------------------------------------------------------------------------- predict


def photo_folder(root: Path) -> Path:
    folder = root / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(("a.png", "sub/b.jpg", "c.png")):
        Image.fromarray(np.full((40, 30, 3), 60 * i, dtype=np.uint8)).save(folder / name)
    exif_rotated_jpeg(folder / "phone.jpg")
    sixteen_bit_gradient(folder / "scan.png")
    decompression_bomb(folder / "bomb.png")
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("hello")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "sub" / "back").symlink_to(folder, target_is_directory=True)
    return folder


def test_predict_skips_bad_images_and_labels_every_good_one(tiny_run: TinyRun,
                                                            tmp_path: Path) -> None:
    folder = photo_folder(tmp_path)
    os.mkfifo(folder / "camera.png")  # a FIFO with an image name: counted, never opened
    result = salgl("predict", str(tiny_run.model), str(folder), str(tmp_path / "nope.png"),
                   "--threshold", "0", "-o", str(tmp_path / "out.jsonl"))
    assert result.returncode == 1, result.stderr
    assert "nope.png: no such file or folder" in result.stderr
    names = [Path(json.loads(line)["path"]).name
             for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert names == ["a.png", "c.png", "phone.jpg", "scan.png", "b.jpg"]
    skipped = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 3
    bomb_line = next(line for line in skipped if "bomb.png" in line)
    assert "too large to decode safely" in bomb_line and bomb_line.count("bomb.png") == 1
    assert any("broken.png: cannot decode" in line for line in skipped)
    ignored = [line for line in result.stderr.splitlines() if "ignored" in line]
    assert len(ignored) == 1
    assert "1 broken or looping links" in ignored[0]
    assert "1 FIFOs, devices or sockets (never opened)" in ignored[0]
    assert "1 files without an image extension" in ignored[0]
    assert "Traceback" not in result.stderr


def test_concurrent_predictions_to_one_file_leave_one_whole_result(tiny_run: TinyRun,
                                                                   tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        Image.fromarray(np.full((32, 32, 3), i * 6, dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "labels.jsonl"
    env = {**os.environ, "SALGL_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "salgl.cli", "-q", "predict", str(tiny_run.model),
               str(folder), "--batch-size", "4", "-o", str(out)]
    runs = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE,
                             preexec_fn=lambda: os.umask(0o022)) for _ in range(2)]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]  # every image labelled
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 40 and len({r["path"] for r in records}) == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.jsonl", "many"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # colleagues can read it


# --------------------------------------------------------------------------- file system


@contextlib.contextmanager
def small_mount(where: Path, size_kb: int, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` (root only): a real full or read-only file system."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kb}k" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("needs root and tmpfs mounts to make a full or read-only file system "
                    f"({mounted.stderr.decode().strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> None:
    """Use up every free byte of the file system under ``folder``."""
    with contextlib.suppress(OSError), open(folder / "filler", "wb", buffering=0) as fh:
        while True:
            fh.write(b"\0" * 4096)


def test_predict_onto_a_full_disk_keeps_the_earlier_file(tiny_run: TinyRun,
                                                         tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(30):
        Image.fromarray(np.full((32, 32, 3), i, dtype=np.uint8)).save(images / f"{i}.png")
    with small_mount(tmp_path / "disk", 64) as disk:
        earlier = disk / "labels.jsonl"
        earlier.write_text('{"earlier": true}\n')
        fill(disk)
        result = salgl("predict", str(tiny_run.model), str(images), "-o", str(earlier))
        assert result.returncode == 2, result.stderr
        assert error_line(result) == (f"salgl predict: error: {earlier}: cannot write (No space "
                                      "left on device); earlier outputs are unchanged")
        assert earlier.read_text() == '{"earlier": true}\n'
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "labels.jsonl"]


def test_read_only_folder_is_named(tmp_path: Path) -> None:
    with small_mount(tmp_path / "ro", 64, read_only=True) as ro:
        with pytest.raises(SalglError) as caught, atomic_path(ro / "x.jsonl") as tmp:
            tmp.write_text("never")
        assert str(caught.value) == (f"{ro / 'x.jsonl'}: cannot write (Read-only file "
                                     "system); earlier outputs are unchanged")


def test_training_onto_a_full_disk_names_the_model_file(tmp_path: Path) -> None:
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=8, n_test=4)
    emb = write_embeddings(prepared, tmp_path / "emb")
    tiny_params(tmp_path / "params.yaml", batch_size=4)
    args = train_args(tmp_path, prepared, emb)
    with small_mount(tmp_path / "out", 96) as disk:
        (disk / "model.safetensors").write_bytes(b"the earlier model")
        fill(disk)
        result = salgl(*args)
        assert result.returncode == 2, result.stderr
        assert "model.safetensors: cannot write (No space left on device)" in error_line(result)
        assert (disk / "model.safetensors").read_bytes() == b"the earlier model"
    assert "Traceback" not in result.stderr


def test_outputs_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert current_umask() == 0o022
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "inner.txt").write_text("y")
        os.umask(0o027)
        with atomic_path(tmp_path / "g.txt") as tmp:
            tmp.write_text("z")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "g.txt").stat().st_mode) == 0o640


def test_atomic_dir_keeps_the_old_folder_until_the_new_one_is_whole(tmp_path: Path) -> None:
    target = tmp_path / "prepared"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError("killed half-way")
    assert (target / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]


def test_writes_do_not_hang_on_a_full_disk(tmp_path: Path) -> None:
    """A writer blocked forever would hang the pipeline; it must fail, in seconds."""
    with small_mount(tmp_path / "disk", 32) as disk:
        fill(disk)
        errors: list[BaseException] = []

        def write() -> None:
            try:
                with atomic_path(disk / "x.bin") as tmp:
                    tmp.write_bytes(b"\0" * 100_000)
            except SalglError as exc:
                errors.append(exc)

        worker = threading.Thread(target=write)
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive() and len(errors) == 1


# --------------------------------------------------------------------------- settings


def test_too_few_steps_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    """(A batch larger than the data is refused likewise: tests/test_dvc_pipeline.py.)"""
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=10, n_test=4)
    emb = write_embeddings(prepared, tmp_path / "emb")
    tiny_params(tmp_path / "params.yaml", batch_size=4, epochs=2, warmup=0.2)
    result = salgl(*train_args(tmp_path, prepared, emb))
    assert result.returncode == 2
    assert error_line(result) == (
        "salgl train: error: train.fashion_scenes.epochs: 2 epoch(s) of 2 step(s) make 4 "
        "optimiser steps, too few for the one-cycle schedule with warmup 0.2 (it needs at "
        "least 6); raise epochs or lower batch_size")
    assert not (tmp_path / "out").exists() and not (tmp_path / "live").exists()
    assert not (tmp_path / "state").exists()


# --------------------------------------------------------------------------- messages


def test_metrics_on_a_text_file_named_npz(tmp_path: Path) -> None:
    fake = tmp_path / "predictions.npz"
    fake.write_text("scores,targets\n0.1,1\n")
    result = salgl("metrics", str(fake))
    assert result.returncode == 2
    line = error_line(result)
    assert "not an .npz archive" in line and "pickle" not in line


def test_state_dict_mismatch_names_the_keys(tiny_run: TinyRun, tmp_path: Path) -> None:
    with safe_open(str(tiny_run.model), framework="pt") as fh:
        metadata = fh.metadata()
    tensors = load_file(str(tiny_run.model))
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    tensors["extra.weight"] = tensors[sorted(tensors)[0]].clone()
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=metadata)
    with pytest.raises(SalglError) as caught:
        load_model(bad)
    message = str(caught.value)
    assert "\n" not in message
    assert f"1 missing ({dropped})" in message and "1 unexpected (extra.weight)" in message


def test_prepare_onto_a_full_disk_names_the_folder(tmp_path: Path, salgl_main) -> None:
    from fakes import make_source

    source = make_source(tmp_path / "fmnist", n_train=40, n_test=20)
    (tmp_path / "params.yaml").write_text(
        f"prepare:\n  fashion_scenes:\n    source: {source}\n    train_images: 40\n"
        "    test_images: 20\n    image_size: 32\n", encoding="utf-8")
    with small_mount(tmp_path / "disk", 64) as disk:
        out = disk / "prepared"
        (out / "images").mkdir(parents=True)
        (out / "labels.txt").write_text("the earlier dataset\n")
        fill(disk)
        code, _, err = salgl_main("prepare", "fashion_scenes", "--params",
                                  str(tmp_path / "params.yaml"), "--out", str(out))
        lines = [line for line in err.splitlines() if line.startswith("salgl ")]
        assert code == 2 and len(lines) == 1, err
        assert f"{out}: cannot write (No space left on device)" in lines[0]
        assert (out / "labels.txt").read_text() == "the earlier dataset\n"
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "prepared"]
