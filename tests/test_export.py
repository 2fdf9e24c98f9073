"""ONNX export: ONNX Runtime gives our outputs for any batch size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import salgl

from salgl.checkpoint import load_model

from conftest import LABELS, TinyRun

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def test_onnx_runtime_matches_the_model(tiny_run: TinyRun, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    result = salgl("export", str(tiny_run.model), "--onnx", str(out))
    assert result.returncode == 0, result.stderr
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
