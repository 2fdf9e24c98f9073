"""Explanation maps from the model's own label attention: the maps, `salgl predict --explain`
and the plots stage's explanations.png."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import tiny_params
from test_output_safety import refused

from salgl.atomic import atomic_dir
from salgl.output_rules import MARKER, check_dir_output

from conftest import LABELS, TinyRun


def _image(path: Path, value: int, size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _is_png(path: Path, least_bytes: int = 5000) -> None:
    assert path.stat().st_size > least_bytes, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 150 and image.size[1] > 150


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Three images, two of them named a.*: a.png, sub/a.jpg, b.png."""
    folder = tmp_path / "photos"
    _image(folder / "a.png", 1)
    _image(folder / "sub" / "a.jpg", 2, (24, 48))
    _image(folder / "b.png", 3)
    return folder


@pytest.fixture
def low_dpi(monkeypatch: pytest.MonkeyPatch) -> None:
    from salgl.figures import common

    monkeypatch.setattr(common, "DPI", 60)


# ----------------------------------------------------------------------------- the maps


def test_maps_lie_on_the_token_grid_and_each_sums_to_one(tiny_run: TinyRun) -> None:
    from salgl.checkpoint import load_model
    from salgl.explain import label_maps, resize_maps

    model, info = load_model(tiny_run.model)
    images = torch.randn(3, 3, info.config.img_size, info.config.img_size,
                         generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, grid = model.tokens(images)
        alpha = model(images)["attention"]
    result = label_maps(model, images)
    assert result.maps.shape == (3, len(LABELS), *grid) and result.grid == grid
    assert result.prefix == 0 and torch.equal(result.outside, torch.zeros(3, len(LABELS)))
    torch.testing.assert_close(result.maps.sum((-2, -1)), torch.ones(3, len(LABELS)))
    torch.testing.assert_close(result.maps.flatten(2), alpha)  # row-major, as the tokens
    torch.testing.assert_close(result.scores, torch.sigmoid(model(images)["logits"]))

    shown = label_maps(model, images, size=(20, 30))
    assert shown.maps.shape == (3, len(LABELS), 20, 30)
    torch.testing.assert_close(shown.maps, resize_maps(result.maps, (20, 30)))
    flat = torch.full((2, 4, 4), 1 / 16)
    torch.testing.assert_close(resize_maps(flat, (7, 5)), torch.full((2, 7, 5), 1 / 16))


def test_prefix_tokens_are_left_out_of_the_grid() -> None:
    """A ViT-like backbone: one class token before a 2x2 grid."""
    from salgl.explain import grid_maps, token_grid

    model = torch.nn.Module()
    model.backbone = torch.nn.Module()
    model.backbone.num_prefix_tokens = 1
    assert token_grid(model, 5) == (1, 2, 2)
    alpha = torch.tensor([[[0.2, 0.1, 0.2, 0.3, 0.2]]])
    maps, outside, prefix = grid_maps(alpha, model)
    assert prefix == 1 and maps.shape == (1, 1, 2, 2)
    torch.testing.assert_close(maps[0, 0], torch.tensor([[0.1, 0.2], [0.3, 0.2]]))
    torch.testing.assert_close(outside, torch.tensor([[0.2]]))


def test_large_images_are_shown_smaller_and_small_ones_as_they_are() -> None:
    from salgl.explain import DISPLAY_SIDE, display_size

    assert display_size(4 * DISPLAY_SIDE, 2 * DISPLAY_SIDE) == (DISPLAY_SIDE, DISPLAY_SIDE // 2)
    assert display_size(40, 30) == (40, 30)


def test_grid_images_are_the_first_with_two_positive_labels() -> None:
    from salgl.figures.explain import chosen_images

    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 1, 1], [1, 1, 0], [0, 1, 1]])
    ignore = np.zeros_like(targets)
    ignore[4, 1] = 1  # image 4 then has one scored positive
    assert chosen_images(targets, None).tolist() == [1, 3, 4, 5, 0, 2]
    assert chosen_images(targets, ignore).tolist() == [1, 3, 5, 0, 2, 4]


# ----------------------------------------------------------------------------- predict


def test_predict_explain_writes_one_png_per_image(tiny_run: TinyRun, tmp_path: Path,
                                                  photos: Path, salgl_main, low_dpi: None
                                                  ) -> None:
    out = tmp_path / "explained"
    code, stdout, err = salgl_main("predict", str(tiny_run.model), str(photos), "--threshold",
                                   "0", "--topk", "2", "--explain", str(out))
    assert code == 0, err
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [Path(r["path"]).relative_to(photos).as_posix() for r in records] == \
        ["a.png", "b.png", "sub/a.jpg"]
    assert all(len(r["labels"]) == 2 for r in records)
    names = sorted(p.name for p in out.iterdir())
    assert names == [MARKER, "a-2.png", "a.png", "b.png"]  # sub/a.jpg came after a.png
    for name in names[1:]:
        _is_png(out / name)
    assert not list(tmp_path.glob(".explained.*"))  # no temporary folder left

    # An earlier --explain folder is salgl's: replaced as a whole by the next run.
    code, _, err = salgl_main("predict", str(tiny_run.model), str(photos / "b.png"),
                              "--explain", str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b.png"]


def test_predict_explain_draws_the_listed_labels_or_the_top_one(
        tiny_run: TinyRun, photos: Path, tmp_path: Path, salgl_main, monkeypatch) -> None:
    import salgl.explain

    drawn: list[tuple[str, list[str], str]] = []

    def spy(path, image, maps, names, scores, title, prefix=0):
        assert maps.shape[0] == len(names) == len(scores)
        drawn.append((Path(path).name, list(names), title))
        return Path(path)

    monkeypatch.setattr(salgl.explain, "draw_explanation", spy)
    code, stdout, err = salgl_main("predict", str(tiny_run.model), str(photos / "a.png"),
                                   str(photos / "b.png"), "--threshold", "0", "--topk", "3",
                                   "--explain", str(tmp_path / "listed"))
    assert code == 0, err
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [names for _, names, _ in drawn] == [r["labels"] for r in records]
    drawn.clear()
    code, stdout, err = salgl_main("predict", str(tiny_run.model), str(photos / "a.png"),
                                   "--threshold", "1", "--explain", str(tmp_path / "top"))
    assert code == 0, err
    record = json.loads(stdout)
    assert record["labels"] == []
    top = max(record["scores"], key=record["scores"].get)
    assert drawn == [("a.png", [top], f"{photos / 'a.png'}\nno label reached its cut-off: "
                      "the top-1 label is shown")]


def test_predict_explain_refuses_a_folder_of_other_files(tiny_run: TinyRun, tmp_path: Path,
                                                         photos: Path, salgl_main) -> None:
    model = Path(shutil.copy(tiny_run.model, tmp_path / "model.safetensors"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    line = refused(salgl_main, tmp_path, "predict", str(model), str(photos), "-o",
                   str(tmp_path / "labels.jsonl"), "--explain", str(mine))
    assert "mine: holds files salgl did not write (first: notes.txt)" in line

    # A folder salgl wrote, but not with --explain: a prepared dataset is never replaced.
    with atomic_dir(tmp_path / "prepared", "prepared") as folder:
        (folder / "labels.txt").write_text("cat\n")
    line = refused(salgl_main, tmp_path, "predict", str(model), str(photos), "--explain",
                   str(tmp_path / "prepared"))
    assert "(first: labels.txt)" in line
    line = refused(salgl_main, tmp_path, "predict", str(model), str(photos), "--explain",
                   str(photos / "explained"))
    assert "lies inside an input of this command (PATH" in line
    line = refused(salgl_main, tmp_path, "predict", str(model), str(photos / "a.png"), "-o",
                   str(tmp_path / "out" / "labels.jsonl"), "--explain", str(tmp_path / "out"))
    assert "holds another output of this command (--output" in line


def test_predict_explain_refuses_a_model_without_attention(tmp_path: Path, photos: Path,
                                                           salgl_main) -> None:
    from salgl.checkpoint import save_model
    from salgl.model import SalglConfig, create_model

    config = SalglConfig("resnet10t", num_classes=len(LABELS), img_size=32, backbone_stage=2,
                         num_scenes=1, num_steps=0, head="linear")
    model = tmp_path / "linear.safetensors"
    save_model(model, create_model(config), LABELS, {"kind": "imagenet"})
    line = refused(salgl_main, tmp_path, "predict", str(model), str(photos / "a.png"),
                   "--explain", str(tmp_path / "explained"))
    assert "linear head has no label attention" in line and "head: salgl" in line
    code, _, err = salgl_main("predict", str(model), str(photos / "a.png"))
    assert code == 0, err  # without --explain it labels as before


def test_predict_help_explains_the_option(salgl_main) -> None:
    code, out, _ = salgl_main("predict", "--help")
    text = " ".join(out.split())
    assert code == 0
    assert "--explain DIR" in text and "not a causal attribution" in text
    assert "replaced as a whole" in text and "linear head has no attention" in text


# ----------------------------------------------------------------------------- plots stage


def test_the_plots_stage_draws_explanations(tiny_run: TinyRun, tmp_path: Path, salgl_main,
                                            monkeypatch, low_dpi: None) -> None:
    params = tiny_params(tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)  # the evaluate stage's default outputs land here
    code, _, err = salgl_main("evaluate", "fashion_scenes", "--params", str(params),
                              "--model", str(tiny_run.model), "--prepared",
                              str(tiny_run.prepared))
    assert code == 0, err
    figures = tmp_path / "figs"
    code, _, err = salgl_main("plots", "fashion_scenes", "--params", str(params), "--model",
                              str(tiny_run.model), "--prepared", str(tiny_run.prepared),
                              "--out", str(figures))
    assert code == 0, err
    _is_png(figures / "explanations.png", least_bytes=20_000)
    assert check_dir_output(figures, "figures") == figures.resolve()  # a rerun may write it
