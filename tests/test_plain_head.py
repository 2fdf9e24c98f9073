"""The plain-backbone baseline (head: linear) goes through the same commands and model file
format as SALGL: train, info, evaluate and predict, in-process through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import tiny_params

from conftest import LABELS, write_embeddings
from fakes import make_prepared


def test_plain_model_outputs_one_certain_scene_and_counts_labels() -> None:
    from salgl.losses import SalglCriterion
    from salgl.model import PlainClassifier, SalglConfig, create_model

    config = SalglConfig("resnet10t", num_classes=3, img_size=32, backbone_stage=2,
                         num_scenes=1, num_steps=0, head="linear")
    model = create_model(config)
    assert isinstance(model, PlainClassifier)
    targets = torch.tensor([[1.0, 0, 1], [0, 1, 1]])
    out = model.train()(torch.rand(2, 3, 32, 32), targets)
    assert out["logits"].shape == (2, 3) and torch.equal(out["scene_probs"], torch.ones(2, 1))
    assert torch.equal(model.cooccurrence[0], targets.T @ targets)
    terms = SalglCriterion()(out, targets)
    # constants (up to the entropy's log epsilon) that carry no gradient
    assert terms["scene_sample"].item() == pytest.approx(0, abs=1e-4)
    assert terms["scene_batch"].item() == pytest.approx(0, abs=1e-4)
    assert not terms["scene_batch"].requires_grad
    with pytest.raises(ValueError, match="one scene"):
        create_model(SalglConfig("resnet10t", num_classes=3, img_size=32, head="linear"))


def test_plain_head_trains_evaluates_and_predicts_through_the_cli(tmp_path: Path,
                                                                  salgl_main) -> None:
    from safetensors import safe_open

    from salgl.checkpoint import read_model_info

    prepared = make_prepared(tmp_path / "prepared", LABELS)
    embeddings = write_embeddings(prepared, tmp_path / "embeddings")
    params = tiny_params(tmp_path / "params.yaml", head="linear")
    model = tmp_path / "model.safetensors"
    code, _, err = salgl_main("train", "fashion_scenes", "--params", str(params), "--prepared",
                              str(prepared), "--embeddings", str(embeddings), "--out", str(model),
                              "--state", str(tmp_path / "state"), "--live", str(tmp_path / "live"))
    assert code == 0, err
    with safe_open(str(model), "pt") as f:  # SALGL's format: safetensors with our metadata
        keys = set(f.keys())
    assert "classifier.weight" in keys and not any(k.startswith("encoder.") for k in keys)
    info = read_model_info(model)
    assert info["model"]["head"] == "linear" and info["extra"]["thresholds"]
    code, out, err = salgl_main("info", str(model))
    assert code == 0, err
    assert "linear: global average pooling" in out and "thresholds calibrated" in out

    metrics = tmp_path / "metrics.json"
    code, _, err = salgl_main("evaluate", "fashion_scenes", "--params", str(params), "--model",
                              str(model), "--prepared", str(prepared), "--metrics",
                              str(tmp_path / "headline.json"), "--all-metrics", str(metrics),
                              "--eval-dir", str(tmp_path / "eval"), "--predictions",
                              str(tmp_path / "predictions.npz"))
    assert code == 0, err
    scores = json.loads(metrics.read_text())
    assert 0 <= scores["mAP"] <= 1 and "CF1_calibrated" in scores

    image = tmp_path / "a.png"
    Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8)).save(image)
    code, out, err = salgl_main("predict", str(model), str(image))
    assert code == 0, err
    record = json.loads(out)
    assert set(record["scores"]) == set(LABELS) and record["scene_probs"] == [1.0]
