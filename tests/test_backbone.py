"""Backbones by timm name, and local weight files loaded without running pickle code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from salgl.errors import SalglError
from salgl.model.backbone import create_backbone, feature_tokens

from fakes import write_exploit_pickle


def reference_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    model = create_backbone("resnet10t", img_size=32)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_pretrained_path_loads_weights(tmp_path: Path, fmt: str) -> None:
    weights = reference_weights()
    with_head = {**weights, "fc.weight": torch.zeros(3, 512), "fc.bias": torch.zeros(3)}
    if fmt == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file(with_head, str(path))
    else:
        path = tmp_path / "w.pt"
        torch.save({"state_dict": {f"module.{k}": v for k, v in with_head.items()}}, path)
    torch.manual_seed(99)  # a different random init, overwritten by the file
    model = create_backbone("resnet10t", img_size=32, pretrained_path=str(path))
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = write_exploit_pickle(tmp_path / "evil.pt", marker, "conv1.weight")
    with pytest.raises(SalglError, match="refused or unreadable weight file"):
        create_backbone("resnet10t", img_size=32, pretrained_path=str(path))
    assert not marker.exists()


def test_missing_or_mismatched_weights_are_named(tmp_path: Path) -> None:
    weights = reference_weights()
    partial = {k: v for k, v in weights.items() if not k.startswith("layer4")}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(SalglError, match="backbone weights missing"):
        create_backbone("resnet10t", img_size=32,
                        pretrained_path=str(tmp_path / "partial.safetensors"))
    wrong = {**weights, "conv1.0.weight": torch.zeros(1, 1, 1, 1)}
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(SalglError, match=r"conv1.0.weight has shape \(1, 1, 1, 1\)"):
        create_backbone("resnet10t", img_size=32,
                        pretrained_path=str(tmp_path / "wrong.safetensors"))
    with pytest.raises(SalglError, match="not found"):
        create_backbone("resnet10t", img_size=32, pretrained_path=str(tmp_path / "none.pt"))


def test_tokens_from_cnn_stage_and_vit() -> None:
    images = torch.randn(2, 3, 64, 64)
    cnn = create_backbone("resnet10t", img_size=64, stage=3).eval()
    tokens, grid = feature_tokens(cnn, images)
    assert tokens.shape == (2, 16, 256) and grid == (4, 4) and cnn.num_features == 256
    vit = create_backbone("vit_tiny_patch16_224", img_size=64).eval()
    tokens, grid = feature_tokens(vit, images)
    assert tokens.shape == (2, 17, 192) and grid == (4, 4)  # class token kept


def test_offline_pretrained_download_fails_with_the_name() -> None:
    with pytest.raises(SalglError, match="could not download pretrained weights for "
                                         "'resnet10t'"):
        create_backbone("resnet10t", img_size=32, pretrained=True, key="train.x.backbone")
