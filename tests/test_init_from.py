"""Fine-tuning from a model file (train.<dataset>.init_from) onto data whose labels differ:
matched by name, new ones fresh, missing ones dropped, the memory empty; through the real
command line, then predict and info."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from salgl.checkpoint import load_model
from salgl.config import check_start_inside_input
from salgl.data.prepared import load_prepared
from salgl.errors import SalglError
from salgl.init_from import match_labels, start_from
from salgl.train import build_model, load_label_vectors

from conftest import LABELS, TinyRun, tiny_train_config, write_embeddings
from fakes import make_prepared

REPO = Path(__file__).resolve().parents[1]
# dog -> puppy and sofa -> couch renamed, boat added; traffic_light and TeddyBear are the
# source's "traffic light" and "teddy bear" written otherwise.
NEW_LABELS = ["cat", "puppy", "traffic_light", "TeddyBear", "couch", "cup", "boat"]


def new_data(root: Path) -> tuple[Path, Path]:
    prepared = make_prepared(root / "prepared", NEW_LABELS, seed=3)
    return prepared, write_embeddings(prepared, root / "embeddings")


def test_labels_match_by_their_words() -> None:
    assert match_labels(LABELS, NEW_LABELS) == {0: 0, 2: 2, 3: 3, 5: 5}


def test_start_from_keeps_what_fits_and_starts_the_rest_fresh(tiny_run: TinyRun,
                                                              tmp_path: Path) -> None:
    prepared, embeddings = new_data(tmp_path)
    data = load_prepared(prepared)
    vectors, info = load_label_vectors(embeddings, data.labels)
    cfg = tiny_train_config()
    torch.manual_seed(0)
    model = build_model(cfg, data.labels, vectors, info, "train.mine")
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = start_from(model, tiny_run.model, data.labels, cfg.normalization, "train.mine")
    assert report.matched == ["cat", "traffic_light", "TeddyBear", "cup"]
    assert report.new == ["puppy", "couch", "boat"] and report.dropped == ["dog", "sofa"]
    assert "4 label(s) matched, 3 new (puppy, couch, boat), 2 dropped (dog, sofa)" in \
        report.line("train.mine")
    source, _ = load_model(tiny_run.model)
    old, state = source.state_dict(), model.state_dict()
    for name in ("classifier.weight", "classifier.bias", "label_embeddings"):
        torch.testing.assert_close(state[name][[0, 2, 3, 5]], old[name][[0, 2, 3, 5]])
        torch.testing.assert_close(state[name][[1, 4, 6]], fresh[name][[1, 4, 6]])
    assert torch.count_nonzero(state["cooccurrence"]) == 0  # counts the new data afresh
    assert old["cooccurrence"].abs().sum() > 0
    for name in ("scene_classifier.weight", "fusion.weight", "backbone.conv1.0.weight"):
        torch.testing.assert_close(state[name], old[name])


def test_a_file_of_another_backbone_or_size_is_one_line_naming_both(tiny_run: TinyRun,
                                                                     tmp_path: Path) -> None:
    prepared, embeddings = new_data(tmp_path)
    data = load_prepared(prepared)
    vectors, info = load_label_vectors(embeddings, data.labels)
    for change, expected in (({"img_size": 48}, "img_size 32 in the file, 48 here"),
                             ({"backbone": "resnet14t"},
                              "backbone 'resnet10t' in the file, 'resnet14t' here")):
        cfg = tiny_train_config(**change)
        model = build_model(cfg, data.labels, vectors, info, "train.mine")
        with pytest.raises(SalglError, match=expected) as caught:
            start_from(model, tiny_run.model, data.labels, cfg.normalization, "train.mine")
        assert str(caught.value).startswith(f"train.mine.init_from: {tiny_run.model} does not "
                                            "fit these settings")
        assert "\n" not in str(caught.value)
    cfg = tiny_train_config()
    model = build_model(cfg, data.labels, vectors, info, "train.mine")
    with pytest.raises(SalglError, match="normalised 'imagenet', this run uses 'none'"):
        start_from(model, tiny_run.model, data.labels, "none", "train.mine")


def test_under_dvc_the_start_file_lies_inside_the_raw_input(tmp_path: Path) -> None:
    params = {"datasets": {"mine": "data/raw/mine"}}
    check_start_inside_input(params, "mine", "data/raw/mine/start.safetensors")
    with pytest.raises(SalglError, match=r"train\.mine\.init_from: models/x\.safetensors is "
                                         r"outside data/raw/mine \(datasets\.mine\)"):
        check_start_inside_input(params, "mine", "models/x.safetensors")


@pytest.mark.slow
def test_fine_tune_through_the_command_line_then_predict_and_info(tiny_run: TinyRun,
                                                                  tmp_path: Path) -> None:
    prepared, embeddings = new_data(tmp_path)
    settings = {**vars(tiny_train_config()), "init_from": str(tiny_run.model)}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"fashion_scenes": settings}}),
                      encoding="utf-8")
    model = tmp_path / "model.safetensors"
    env = {**os.environ, "SALGL_OFFLINE": "1", "PYTHONPATH": str(REPO)}

    def salgl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "salgl.cli", *args], capture_output=True,
                              text=True, env=env, timeout=300, cwd=tmp_path)

    trained = salgl("train", "fashion_scenes", "--params", str(params), "--prepared", str(prepared),
                    "--embeddings", str(embeddings), "--out", str(model), "--state",
                    str(tmp_path / "state"), "--live", str(tmp_path / "live"))
    assert trained.returncode == 0, trained.stderr
    assert (f"train.fashion_scenes.init_from: started from {tiny_run.model}: 4 label(s) "
            "matched, 3 new (puppy, couch, boat), 2 dropped (dog, sofa)") in trained.stderr
    image = sorted((prepared / "images").glob("test_*.png"))[0]
    predicted = salgl("-q", "predict", str(model), str(image), "--topk", "2")
    assert predicted.returncode == 0, predicted.stderr
    assert set(json.loads(predicted.stdout)["scores"]) == set(NEW_LABELS)
    card = salgl("info", str(model))
    assert card.returncode == 0, card.stderr
    assert f"started    from {tiny_run.model}" in card.stdout
    assert "4 labels matched, 3 new, 2 dropped" in card.stdout


def test_fine_tune_from_an_imported_checkpoint(tmp_path: Path) -> None:
    """The authors' released format, imported, is a start like ours: settings matching its
    architecture, this run's label vectors of its width, labels matched by name."""
    import numpy as np
    from test_official import fake_memory, to_released_format

    from salgl.config import TrainConfig
    from salgl.model import SALGL, SalglConfig
    from salgl.official import import_official

    from official_fixtures import released_config, write_experiment

    torch.manual_seed(0)
    released = SALGL(SalglConfig(backbone="resnet10t", num_classes=len(LABELS), img_size=32,
                                 embed_dim=5, num_scenes=3, attention_dim=16, encoder_ffn=32),
                     torch.randn(len(LABELS), 5))
    released.cooccurrence.copy_(fake_memory(3, len(LABELS)))
    exp = write_experiment(tmp_path / "exp", released_config(
        backbone="resnet10t", img_size=32, num_classes=len(LABELS), num_scenes=3),
        to_released_format(released.state_dict()))
    names = tmp_path / "labels.txt"
    names.write_text("".join(f"{name}\n" for name in LABELS), encoding="utf-8")
    imported = tmp_path / "coco.safetensors"
    import_official(exp, names, imported)
    arch = load_model(imported)[1].config
    cfg = TrainConfig(**{name: getattr(arch, name) for name in (
        "backbone", "img_size", "num_scenes", "num_steps", "attention_dim", "encoder_heads",
        "encoder_ffn", "output_stride", "backbone_stage", "outmess", "head", "pos_encoding")})
    labels = ["cat", "dog", "zebra crossing"]  # two known, one new
    vectors = np.random.default_rng(0).normal(size=(len(labels), 5)).astype(np.float32)
    model = build_model(cfg, labels, vectors, {"source": "glove"}, "train.mine")
    report = start_from(model, imported, labels, cfg.normalization, "train.mine")
    assert report.matched == ["cat", "dog"] and report.new == ["zebra crossing"]
    assert report.dropped == LABELS[2:]
    torch.testing.assert_close(model.state_dict()["fusion.weight"],
                               released.state_dict()["fusion.weight"])


def test_the_readme_fine_tune_block_is_the_default_run_plus_a_start() -> None:
    """The README's block, put into the real params.yaml as it says (the anchor on the default
    run's train block, my_tags beside it): my_tags trains the default model's architecture
    and recipe, from the start file, and DVC's YAML reader (ruamel) merges it alike."""
    import re

    from ruamel.yaml import YAML

    from salgl.config import dataset_params
    from salgl.yaml_text import read_yaml

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**Start from a trained model (fine-tuning onto your "):]
    block = re.search(r"```yaml\n(.*?)\n```", section, flags=re.S).group(1)
    mine = block[block.index("  my_tags:\n    <<:"):]
    text = (REPO / "params.yaml").read_text(encoding="utf-8")
    text = text.replace("train:\n  fashion_scenes:", "train:\n  fashion_scenes: &default_run", 1)
    end = text.index("\n  mscoco:", text.index("train:\n"))
    text = text[:end] + "\n" + mine + "\n" + text[end:]
    for reader in (lambda t: read_yaml(t, "params.yaml"), YAML(typ="safe").load):
        params = reader(text)
        params["datasets"]["my_tags"] = "data/raw/my_tags"
        params["prepare"]["my_tags"] = {"format": "csv", "annotations": "t.csv", "images": "i"}
        params["embed"]["my_tags"] = yaml.safe_load(block)["embed"]["my_tags"]
        train = dataset_params(params, "my_tags").train
        default = dataset_params(params, "fashion_scenes").train
        assert train.init_from == "data/raw/my_tags/start.safetensors"
        assert (train.epochs, train.batch_size) == (10, 8)
        assert vars(train) | {"init_from": None, "epochs": 5, "batch_size": 64} == vars(default)
        check_start_inside_input(params, "my_tags", train.init_from)
