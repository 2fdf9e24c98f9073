"""Our model files rebuild the same model, and refuse bad or future metadata by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from salgl.checkpoint import load_model, save_model
from salgl.errors import SalglError
from salgl.model import SALGL, SalglConfig

LABELS = ["a", "b", "c", "d"]


def model() -> SALGL:
    torch.manual_seed(0)
    cfg = SalglConfig(backbone="resnet10t", num_classes=4, img_size=32, embed_dim=6,
                      num_scenes=2, attention_dim=8, encoder_ffn=16, backbone_stage=2)
    m = SALGL(cfg, torch.randn(4, 6))
    m.cooccurrence.copy_(torch.rand(2, 4, 4))
    return m.eval()


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    m = model()
    path = tmp_path / "m.safetensors"
    save_model(path, m, LABELS, {"kind": "imagenet"}, {"note": 1})
    loaded, info = load_model(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x)["logits"], loaded(x)["logits"])
    assert info.labels == LABELS and info.extra == {"note": 1}
    assert torch.equal(loaded.cooccurrence, m.cooccurrence)
    assert not list(tmp_path.glob(".*tmp"))


def rewrite_meta(path: Path, change) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["salgl"])
    change(meta)
    save_file(load_file(str(path)), str(path), metadata={"salgl": json.dumps(meta)})


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m.pop("labels"), "metadata field 'labels' missing"),
    (lambda m: m.pop("model"), "metadata field 'model' missing"),
    (lambda m: m.update(format_version=99), "metadata field 'format_version' is 99"),
    (lambda m: m["model"].update(num_classes=5), "metadata field 'labels' has 4 names"),
])
def test_bad_metadata_is_refused_by_field(tmp_path: Path, change, fragment: str) -> None:
    path = tmp_path / "m.safetensors"
    save_model(path, model(), LABELS, {"kind": "imagenet"})
    rewrite_meta(path, change)
    with pytest.raises(SalglError, match=fragment) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_file_without_our_metadata_or_not_safetensors(tmp_path: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(1)}, str(plain))
    with pytest.raises(SalglError, match="metadata field 'salgl' missing"):
        load_model(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    with pytest.raises(SalglError, match="not a readable safetensors file"):
        load_model(junk)
