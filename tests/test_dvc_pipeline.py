"""The real `dvc repro` on a tiny params set, in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fakes import make_source

REPO = Path(__file__).resolve().parents[1]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, **GIT_ENV, "SALGL_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0 or not check, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def copy_repository(dest: Path) -> None:
    """Tracked and untracked-but-not-ignored files, minus pipeline outputs."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    skip = ("data/", "models/", "plots/", "metrics/", "dvclive/", "state/", "dvc.lock")
    for name in listed:
        if name.startswith(skip) or not (REPO / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)


def tiny_params(source: Path) -> dict:
    return {
        "datasets": ["fashion_scenes"],
        "official": {},
        "nproc": 1,
        "prepare": {"fashion_scenes": {"source": str(source), "image_size": 32,
                                       "train_images": 48, "test_images": 24, "seed": 0}},
        "embed": {"fashion_scenes": {"source": "cooccurrence", "dim": 8, "epochs": 30}},
        "train": {"fashion_scenes": {"backbone": "resnet10t", "backbone_stage": 2,
                                     "img_size": 32, "num_scenes": 2, "attention_dim": 8,
                                     "encoder_ffn": 16, "epochs": 1, "batch_size": 16,
                                     "num_workers": 0, "lr": 0.003, "ema_decay": 0.9,
                                     "warmup": 0.5}},
        "evaluate": {"fashion_scenes": {"threshold": 0.5}},
        "plots": {"fashion_scenes": {"pr_labels": 4, "cloud_words": 10}},
    }


def build_tiny_repo(repo: Path, fmnist: Path) -> dict:
    """A copy of this repository with tiny params, committed once (DVCLive needs a commit)."""
    repo.mkdir(parents=True)
    copy_repository(repo)
    params = tiny_params(make_source(fmnist, n_train=60, n_test=30))
    (repo / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny"], repo)
    return params


@pytest.mark.slow
def test_dvc_repro_end_to_end(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    params = build_tiny_repo(repo, tmp_path / "fmnist")
    first = run(["dvc", "repro"], repo)
    for stage in ("prepare", "embed", "train", "evaluate", "plots"):
        assert f"Running stage '{stage}@fashion_scenes'" in first.stdout

    metrics = json.loads((repo / "metrics" / "fashion_scenes.json").read_text())
    expected = {"mAP", "mAP_noninterp", "CP", "CR", "CF1", "OP", "OR", "OF1", "CP_top3",
                "CR_top3", "CF1_top3", "OP_top3", "OR_top3", "OF1_top3", "scene_entropy",
                "num_images", "num_labels", "labels_without_positives"}
    assert expected <= metrics.keys()
    for key in expected - {"scene_entropy", "num_images", "num_labels",
                           "labels_without_positives"}:
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["num_images"] == 24 and metrics["num_labels"] == 10
    assert 0.0 <= metrics["scene_entropy"] <= 0.7 + 1e-9  # at most log 2 for 2 scenes
    figures = repo / "plots" / "fashion_scenes" / "figures"
    assert (figures / "training_curves.png").is_file()
    assert (figures / "scene_1_cooccurrence.png").is_file()
    assert (repo / "models" / "fashion_scenes" / "model.safetensors").is_file()
    assert "scene_nmi" in json.loads((repo / "metrics" / "fashion_scenes_scenes.json").read_text())

    second = run(["dvc", "repro"], repo)
    assert "Running stage" not in second.stdout
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results"], repo)

    # A settings error stops the stage, and the outputs of the last good run stay in place.
    model = repo / "models" / "fashion_scenes" / "model.safetensors"
    kept = {p: p.read_bytes() for p in (model, repo / "metrics" / "fashion_scenes.json",
                                        repo / "dvclive" / "fashion_scenes" / "metrics.json")}
    bad = yaml.safe_load(yaml.safe_dump(params))
    bad["train"]["fashion_scenes"]["batch_size"] = 10_000
    (repo / "params.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    failed = run(["dvc", "repro"], repo, check=False)
    assert failed.returncode != 0
    assert "train.fashion_scenes.batch_size: 10000 is larger" in failed.stderr + failed.stdout
    assert {p: p.read_bytes() for p in kept} == kept
    (repo / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    assert "Running stage" not in run(["dvc", "repro"], repo).stdout

    params["train"]["fashion_scenes"]["lr"] = 0.002
    (repo / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    diff = run(["dvc", "params", "diff"], repo)
    assert "train.fashion_scenes.lr" in diff.stdout
    third = run(["dvc", "repro"], repo)
    ran = {line.split("'")[1] for line in third.stdout.splitlines()
           if line.startswith("Running stage")}
    assert ran == {"train@fashion_scenes", "evaluate@fashion_scenes", "plots@fashion_scenes"}
    shown = run(["dvc", "metrics", "show", "--json"], repo)
    assert "mAP" in shown.stdout
