"""ONNX export: ONNX Runtime gives our outputs for any batch size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import REPO

from salgl.checkpoint import load_model

from conftest import LABELS, TinyRun

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def test_onnx_runtime_matches_the_model(tiny_run: TinyRun, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "salgl.cli", "export", str(tiny_run.model),
                             "--onnx", str(out)], capture_output=True, text=True, env=env,
                            timeout=300)  # not quiet: as a user runs it
    assert result.returncode == 0, result.stderr
    # salgl's own line at most: other libraries' INFO logging stays off
    assert len((result.stdout + result.stderr).strip().splitlines()) <= 3, result.stderr
    # its line names the input and the outputs, and where the thresholds are
    assert "input images (batch, 3, 32, 32)" in result.stderr
    assert "outputs scores (batch, 6) and scene_probs" in result.stderr
    assert "the calibrated thresholds in salgl.thresholds" in result.stderr
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model, info = load_model(tiny_run.model)
    size = info.config.img_size
    for batch in (1, 3):
        images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        scores, scenes = session.run(None, {"images": images.numpy()})
        with torch.no_grad():
            ours = model(images)
        assert scores.shape == (batch, len(LABELS))
        np.testing.assert_allclose(scores, torch.sigmoid(ours["logits"]).numpy(), atol=1e-4)
        np.testing.assert_allclose(scenes, ours["scene_probs"].numpy(), atol=1e-4)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["salgl.labels"]) == LABELS
    assert json.loads(meta["salgl.normalization"])["kind"] == "imagenet"
    # the calibrated cuts travel with the graph: an ONNX consumer labels as predict does
    stored = info.extra["thresholds"]
    assert stored is not None and json.loads(meta["salgl.thresholds"]) == stored
    assert meta["salgl.input"].startswith("images: float32 (batch, 3, S, S)")
    assert meta["salgl.outputs"].startswith("scores: float32 (batch, labels)")
