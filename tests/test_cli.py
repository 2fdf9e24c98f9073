"""The real command line: bad input stops with one line and leaves nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from conftest import LABELS, TinyRun, write_embeddings
from fakes import TINY_TRAIN, make_prepared

REPO = Path(__file__).resolve().parents[1]


def salgl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SALGL_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "salgl.cli", "-q", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=300)


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("salgl ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def tiny_params(path: Path, **train) -> Path:
    settings = dict(TINY_TRAIN, num_scenes=2, epochs=1, batch_size=8)
    settings.update(train)
    path.write_text(yaml.safe_dump({"datasets": ["fashion_scenes"],
                                    "train": {"fashion_scenes": settings}}), encoding="utf-8")
    return path


def train_args(root: Path, prepared: Path, emb: Path) -> list[str]:
    return ["train", "fashion_scenes", "--params", str(root / "params.yaml"),
            "--prepared", str(prepared), "--embeddings", str(emb),
            "--out", str(root / "out" / "model.safetensors"), "--state", str(root / "state"),
            "--live", str(root / "live")]


def test_help_lists_every_command() -> None:
    result = salgl("--help")
    assert result.returncode == 0
    for command in ("prepare", "embed", "train", "evaluate", "plots", "predict", "metrics"):
        assert command in result.stdout


def test_bad_params_value_names_key(tmp_path: Path) -> None:
    tiny_params(tmp_path / "params.yaml", num_scenes=0)
    result = salgl(*train_args(tmp_path, tmp_path, tmp_path))
    assert result.returncode == 2
    assert "train.fashion_scenes.num_scenes: must be at least 1" in error_line(result)
    assert not (tmp_path / "out").exists()


def test_unknown_backbone_via_set_override(tmp_path: Path, salgl_main) -> None:
    tiny_params(tmp_path / "params.yaml")
    code, _, err = salgl_main(*train_args(tmp_path, tmp_path, tmp_path), "--set",
                              "backbone=resnet9000")
    assert code == 2
    assert "train.fashion_scenes.backbone: unknown backbone 'resnet9000'" in err


def test_missing_image_stops_before_training(tmp_path: Path) -> None:
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=8, n_test=4)
    emb = write_embeddings(prepared, tmp_path / "emb")
    tiny_params(tmp_path / "params.yaml")
    missing = prepared / "images" / "train_002.png"
    missing.unlink()
    result = salgl(*train_args(tmp_path, prepared, emb))
    assert result.returncode == 2
    assert f"train.tsv:3: image {missing} not found" in error_line(result)
    assert not (tmp_path / "out").exists() and not (tmp_path / "live").exists()


def test_undecodable_image_is_named_also_from_a_loader_worker(tmp_path: Path) -> None:
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=8, n_test=4)
    emb = write_embeddings(prepared, tmp_path / "emb")
    tiny_params(tmp_path / "params.yaml", num_workers=1, batch_size=4)
    broken = prepared / "images" / "train_005.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
    result = salgl(*train_args(tmp_path, prepared, emb))
    assert result.returncode == 2
    line = error_line(result)
    assert f"{broken}: cannot decode image" in line
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_metrics_command_prints_the_metrics_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((50, 4)) < 0.3).astype(np.uint8)
    scores = np.clip(targets * 0.5 + rng.random((50, 4)) * 0.6, 0, 1)
    np.savez(tmp_path / "p.npz", scores=scores, targets=targets)
    result = salgl("metrics", str(tmp_path / "p.npz"), "--threshold", "0.6")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert {"mAP", "mAP_noninterp", "CP", "OF1", "CF1_top3"} <= metrics.keys()
    assert metrics["num_images"] == 50 and 0.5 < metrics["mAP"] <= 1
    np.savez(tmp_path / "bad.npz", scores=scores)
    bad = salgl("metrics", str(tmp_path / "bad.npz"))
    assert bad.returncode == 2 and "targets" in error_line(bad)


def test_predict_labels_good_images_and_reports_bad_ones(tiny_run: TinyRun, tmp_path: Path,
                                                         salgl_main) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(("a.png", "sub/b.jpg")):
        Image.fromarray(np.full((40, 30, 3), 60 * i, dtype=np.uint8)).save(folder / name)
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("hello")
    result = salgl("predict", str(tiny_run.model), str(folder), "--threshold", "0.0",
                   "--topk", "2")
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["path"]).name for r in records] == ["a.png", "b.jpg"]
    for record in records:
        assert set(record["scores"]) == set(LABELS) and len(record["labels"]) == 2
        assert len(record["scene_probs"]) == 2 and record["scene"] in (0, 1)
    assert "broken.png" in result.stderr and "notes.txt" not in result.stderr
    assert "ignored 1 file(s) in the folders given: 1 files without an image extension" in \
        result.stderr
    # Not quiet, stderr a pipe (a log file): no progress bar to be printed again around the
    # skip message, only salgl's own lines.
    env = {**os.environ, "SALGL_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    logged = subprocess.run([sys.executable, "-m", "salgl.cli", "predict", str(tiny_run.model),
                             str(folder), "-o", str(tmp_path / "labels.jsonl")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert logged.returncode == 1
    assert [line.split(":")[0] for line in logged.stderr.splitlines()] == ["salgl predict"] * 3

    code, out, _ = salgl_main("predict", str(tiny_run.model), str(folder / "a.png"),
                              "--format", "csv")
    assert code == 0
    header = out.splitlines()[0].split(",")
    assert header[:4] == ["path", "labels", "scene", "scene_top_labels"]
    assert header[4:] == [*LABELS, "scene_prob_0", "scene_prob_1"]
    row = out.splitlines()[1].split(",")
    assert abs(sum(float(v) for v in row[-2:]) - 1.0) < 1e-4  # as the JSON lines' scene_probs

    (tmp_path / "empty").mkdir()
    code, _, err = salgl_main("predict", str(tiny_run.model), str(tmp_path / "empty"))
    assert code == 2 and "no image files found" in err


def test_prepare_without_any_fashion_mnist_source(tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    (tmp_path / "params.yaml").write_text("datasets: [fashion_scenes]\n", encoding="utf-8")
    env_args = ["prepare", "fashion_scenes", "--out", str(tmp_path / "out")]
    env = {**os.environ, "SALGL_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "SALGL_FASHION_MNIST_SYSTEM_DIR": str(empty)}
    result = subprocess.run([sys.executable, "-m", "salgl.cli", "-q", *env_args], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    line = error_line(result)
    assert "prepare.fashion_scenes.source" in line and str(empty) in line
    assert not (tmp_path / "out").exists()


def test_embed_refuses_a_duplicate_label(tmp_path: Path, salgl_main) -> None:
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=4, n_test=2)
    (prepared / "labels.txt").write_text("cat\ndog\ncat\n", encoding="utf-8")
    (tmp_path / "params.yaml").write_text("datasets: [fashion_scenes]\n", encoding="utf-8")
    code, _, err = salgl_main("embed", "fashion_scenes", "--params",
                              str(tmp_path / "params.yaml"), "--prepared", str(prepared),
                              "--out", str(tmp_path / "emb"))
    assert code == 2
    assert "labels.txt:3: duplicate label 'cat'" in err
    assert not (tmp_path / "emb").exists()


def test_plots_of_a_model_file_alone(tiny_run: TinyRun, tmp_path: Path, salgl_main,
                                     monkeypatch) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "datasets": ["fashion_scenes"],
        "plots": {"fashion_scenes": {"label_groups": {"pets": ["cat", "dog"]}}}}),
        encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code, _, err = salgl_main("plots", "fashion_scenes", "--params",
                              str(tmp_path / "params.yaml"), "--model", str(tiny_run.model),
                              "--out", str(tmp_path / "figs"))
    assert code == 0, err
    names = {p.name for p in (tmp_path / "figs").iterdir()}
    assert {"group_pets.png", "scene_top_labels.png", "scene_0_cloud.png",
            "scene_1_cooccurrence.png"} <= names


def test_predict_cuts_at_the_calibrated_thresholds(tiny_run: TinyRun, tmp_path: Path,
                                                   salgl_main) -> None:
    from salgl.checkpoint import read_model_info

    cuts = dict(zip(LABELS, read_model_info(tiny_run.model)["extra"]["thresholds"], strict=True))
    images = [tmp_path / f"{i}.png" for i in range(3)]
    for i, path in enumerate(images):
        Image.fromarray(np.full((32, 32, 3), 70 * i, dtype=np.uint8)).save(path)
    code, calibrated, err = salgl_main("predict", str(tiny_run.model), *map(str, images))
    assert code == 0, err
    code, overridden, err = salgl_main("predict", str(tiny_run.model), *map(str, images),
                                       "--threshold", "0")
    assert code == 0, err
    for line, every in zip(calibrated.splitlines(), overridden.splitlines(), strict=True):
        record = json.loads(line)
        expected = {n for n, s in record["scores"].items() if s >= cuts[n]}
        assert set(record["labels"]) == expected
        assert len(record["scene_top_labels"]) == 3  # the scene, named by its labels
        assert set(record["scene_top_labels"]) <= set(LABELS)
        assert set(json.loads(every)["labels"]) == set(LABELS)


def test_version_and_model_card(tiny_run: TinyRun, salgl_main) -> None:
    from salgl import __version__

    code, out, _ = salgl_main("--version")
    assert code == 0 and out.strip() == f"salgl {__version__}"
    code, out, err = salgl_main("info", str(tiny_run.model))
    assert code == 0, err
    assert "resnet10t" in out and "selected   epoch 1 on val" in out
    assert "thresholds calibrated on the validation split: cat" in out
    # selected on val: its mAP is the validation mAP, said once; lines wrap between items
    assert "validation mAP" not in out
    assert max(len(line) for line in out.splitlines()) <= 88
    assert "traffic light" in out and "teddy bear" in out  # a name is never cut in two
    card = json.loads(salgl_main("info", str(tiny_run.model), "--json")[1])
    assert card["labels"] == LABELS and set(card["thresholds"]) == set(LABELS)
    assert card["selected_on"] == "val" and len(card["data_fingerprint"]) == 16


def test_predict_help_names_every_output_field_and_argument(salgl_main) -> None:
    code, out, _ = salgl_main("predict", "--help")
    text = " ".join(out.split())  # argparse wraps lines
    assert code == 0
    for field in ("path", "labels", "scores", "scene", "scene_top_labels", "scene_probs",
                  "scene_prob_K"):
        assert field in text
    assert "PATH image files, folders" in text and "--format {jsonl,csv} jsonl:" in text
