"""Fault injection: a training process killed with SIGKILL at any point, rerun as a new
process, ends with the weights and curves of a run that was never stopped."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import LABELS, write_embeddings
from fakes import make_prepared

REPO = Path(__file__).resolve().parents[1]
KILL_AT = Path(__file__).parent / "scripts" / "kill_at.py"
# (point, epoch): one run dies at each, and the next one resumes from what it left
FAULTS = [("mid_epoch", 1), ("after_log", 2), ("after_save", 2)]


def _train_command(root: Path, data: Path, run: str) -> list[str]:
    return ["-q", "train", "fashion_scenes", "--params", str(root / "params.yaml"),
            "--prepared", str(data / "prepared"), "--embeddings", str(data / "emb"),
            "--out", str(root / run / "model.safetensors"), "--state", str(root / run / "state"),
            "--live", str(root / run / "live")]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "SALGL_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=300)


def _curves(live: Path) -> dict[str, list[tuple[str, str]]]:
    """Every logged series as (step, value) rows; wall-clock timestamps left out."""
    curves = {}
    for path in sorted(live.rglob("*.tsv")):
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        name = path.stem
        curves[str(path.relative_to(live))] = [(row["step"], row[name]) for row in rows]
    return curves


def _train_here(settings: dict, data: Path, out: Path) -> None:
    """An unbroken run, in this process (saves a process start; the broken runs are the
    ones that must live in processes of their own)."""
    from salgl.config import TrainConfig
    from salgl.data.prepared import load_prepared
    from salgl.train import train

    train("fashion_scenes", TrainConfig(**settings), load_prepared(data / "prepared"),
          data / "emb", out / "model.safetensors", out / "state", out / "live", progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    make_prepared(root / "prepared", LABELS, n_train=16, n_test=8)
    write_embeddings(root / "prepared", root / "emb")
    return root


# With a loader worker, the kill that matters is the one while a batch is in flight.
@pytest.mark.parametrize(("workers", "faults"), [(0, FAULTS), (1, FAULTS[:1])])
def test_killed_runs_resume_to_the_unbroken_weights_and_curves(data: Path, tmp_path: Path,
                                                               workers: int,
                                                               faults: list) -> None:
    settings = dict(backbone="resnet10t", backbone_stage=2, img_size=32, num_scenes=2,
                    attention_dim=8, encoder_ffn=16, epochs=4, batch_size=8, patience=10,
                    num_workers=workers, randaugment=True, cutout=True, lr=3e-3,
                    ema_decay=0.9)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"datasets": ["fashion_scenes"], "train": {"fashion_scenes": settings}}),
        encoding="utf-8")
    _train_here(settings, data, tmp_path / "whole")

    command = _train_command(tmp_path, data, "broken")
    for point, epoch in faults:
        killed = _run([str(KILL_AT), point, str(epoch), "--", *command])
        assert killed.returncode == -9, (point, killed.stderr)
        assert not (tmp_path / "broken" / "model.safetensors").exists()
    finished = _run(["-m", "salgl.cli", *command])
    assert finished.returncode == 0, finished.stderr

    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "broken" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    curves = _curves(tmp_path / "whole" / "live")
    assert curves and all(len(rows) == 4 for rows in curves.values())
    assert _curves(tmp_path / "broken" / "live") == curves
    state = tmp_path / "broken" / "state"
    assert sorted(p.name for p in state.iterdir()) == ["README.txt"]  # nothing left behind


def test_an_interrupted_fresh_run_keeps_the_published_curves(data: Path, tmp_path: Path) -> None:
    """A new run killed in its first epoch leaves the previous run's curves as they were."""
    settings = dict(backbone="resnet10t", backbone_stage=2, img_size=32, num_scenes=2,
                    attention_dim=8, encoder_ffn=16, epochs=3, batch_size=8, num_workers=0)
    params = {"datasets": ["fashion_scenes"], "train": {"fashion_scenes": settings}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    command = _train_command(tmp_path, data, "run")
    _train_here(settings, data, tmp_path / "run")
    before = _curves(tmp_path / "run" / "live")
    assert before
    settings["lr"] = 1e-3  # other settings: a fresh run, not a resume
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    killed = _run([str(KILL_AT), "mid_epoch", "0", "--", *command])
    assert killed.returncode == -9
    assert _curves(tmp_path / "run" / "live") == before


def test_sigterm_stops_with_143_and_one_line(data: Path, tmp_path: Path) -> None:
    """A run stopped with SIGTERM (as schedulers stop jobs) says so, exits 143, and leaves
    the resume state of its last finished epoch and no temporary file."""
    settings = dict(backbone="resnet10t", backbone_stage=2, img_size=32, num_scenes=2,
                    attention_dim=8, encoder_ffn=16, epochs=40, batch_size=8, num_workers=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"train": {"fashion_scenes": settings}}), encoding="utf-8")
    command = _train_command(tmp_path, data, "run")[1:]  # not quiet: wait for the epoch lines
    env = {**os.environ, "SALGL_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "salgl.cli", *command], env=env,
                               stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("fashion_scenes epoch 2/40:"):  # epoch 1 saved by then
            break
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 143, "".join(seen) + rest
    assert "salgl train: terminated; finished outputs are kept" in rest
    assert "Traceback" not in rest
    state = tmp_path / "run" / "state"
    assert (state / "last.safetensors").is_file()
    assert not list(tmp_path.rglob(".*.tmp"))
