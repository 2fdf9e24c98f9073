"""params.yaml validation: every bad value is refused with its dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from salgl.config import dataset_params, load_params
from salgl.errors import SalglError

REPO = Path(__file__).resolve().parents[1]


def test_repository_params_are_valid() -> None:
    params = load_params(REPO / "params.yaml")
    for name in params["datasets"]:
        settings = dataset_params(params, name)
        assert settings.train.lr > 0 and settings.prepare.image_size >= 32


@pytest.mark.parametrize("stage,key,value,fragment", [
    ("train", "num_scenes", 0, "train.fashion_scenes.num_scenes: must be at least 1"),
    ("train", "lr", -0.001, "train.fashion_scenes.lr: must be greater than 0"),
    ("train", "lr", "fast", "train.fashion_scenes.lr: expected float"),
    ("train", "epochs", 2.5, "train.fashion_scenes.epochs: expected int"),
    ("train", "soft", "yes", "train.fashion_scenes.soft: expected bool"),
    ("train", "backbone", "resnet_does_not_exist", "train.fashion_scenes.backbone: unknown"),
    ("train", "device", "tpu", "train.fashion_scenes.device: 'tpu' is not one of"),
    ("train", "learning_rate", 0.1, "train.fashion_scenes.learning_rate: unknown setting"),
    ("prepare", "scene_purity", 1.5, "prepare.fashion_scenes.scene_purity: must be at most 1"),
    ("prepare", "items_min", 5, "prepare.fashion_scenes.items_min (5) is larger"),
    ("embed", "source", "word2vec", "embed.fashion_scenes.source: 'word2vec' is not one of"),
])
def test_bad_values_name_their_key(stage: str, key: str, value, fragment: str) -> None:
    params = load_params(REPO / "params.yaml")
    params[stage]["fashion_scenes"][key] = value
    with pytest.raises(SalglError) as info:
        dataset_params(params, "fashion_scenes")
    assert fragment in str(info.value)


def test_unknown_dataset_and_broken_yaml(tmp_path: Path) -> None:
    with pytest.raises(SalglError, match="unknown dataset 'imagenet'"):
        dataset_params({}, "imagenet")
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  fashion_scenes: [\n", encoding="utf-8")
    with pytest.raises(SalglError, match=r"params.yaml line \d+: not valid YAML"):
        load_params(bad)


def test_bool_is_not_an_int() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["fashion_scenes"]["batch_size"] = True
    with pytest.raises(SalglError, match="batch_size: expected int"):
        dataset_params(params, "fashion_scenes")
