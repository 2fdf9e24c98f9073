"""Checks of salgl.figures on small synthetic predictions, training history and scene memories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from salgl.figures.ap import plot_per_label_ap, read_per_label
from salgl.figures.clouds import plot_scene_clouds
from salgl.figures.common import grid_shape, safe_label
from salgl.figures.curves import plot_training_curves, read_live_metrics
from salgl.figures.heatmaps import plot_scene_heatmaps
from salgl.figures.memory import conditional_matrix, scene_label_shares
from salgl.figures.pr import curve_ap, pr_curves, write_pr_series
from salgl.figures.stage import make_all_plots
from salgl.scene_match import read_scenes_tsv, scene_matching, scene_names, true_scenes_for

LABELS = ["cat", "dog", "Ankle Boot", "t-shirt", "sky"]
SCENE_NAMES = ["summer", "autumn", "winter"]
PERM = np.array([2, 0, 1])  # learned scene = PERM[true scene]


def _case(tmp_path: Path, n: int = 60) -> dict:
    """Predictions with label 0 perfectly separated; learned scenes are the true ones permuted."""
    rng = np.random.default_rng(0)
    c, s = len(LABELS), len(SCENE_NAMES)
    true = np.arange(n) % s
    targets = (rng.random((n, c)) < 0.4).astype(np.uint8)
    targets[:2] = [[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]  # every label has a positive and a negative
    scores = np.clip(0.45 * targets + 0.55 * rng.random((n, c)), 0, 1).astype(np.float32)
    scores[:, 0] = np.where(targets[:, 0] == 1, 0.7, 0.3) + 0.2 * rng.random(n) - 0.1
    ignore = np.zeros_like(targets)
    ignore[5:10, 4] = 1
    learned = PERM[true]
    scene_probs = np.full((n, s), 0.05, np.float32)
    scene_probs[np.arange(n), learned] = 0.9
    paths = [str(tmp_path / "data" / "images" / "test" / f"{i:03d}.png") for i in range(n)]
    memory = np.einsum("nk,ni,nj->kij", np.eye(s)[learned], targets, targets).astype(np.float32)
    return {"scores": scores, "targets": targets, "ignore": ignore, "scene_probs": scene_probs,
            "labels": np.array(LABELS), "paths": np.array(paths), "true": true,
            "memory": memory}


def _write_npz(case: dict, path: Path) -> Path:
    keys = ("scores", "targets", "ignore", "scene_probs", "labels", "paths")
    np.savez_compressed(path, **{k: case[k] for k in keys})
    return path


def _write_per_label(path: Path) -> Path:
    rows = ["label,ap,ap_noninterp,positives,prevalence", "cat,1.000000,1.000000,20,0.333333",
            "dog,0.612000,0.600000,25,0.416667", "Ankle Boot,0.450000,0.440000,22,0.366667",
            "t-shirt,,,0,0.000000", "sky,0.800000,0.790000,18,0.300000"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _write_live(root: Path, steps: int = 3, split: str = "test", prefix: str = "") -> Path:
    """A DVCLive metrics folder; mAP files are written without the optional timestamp column.

    ``split`` is the folder of the selection mAP (test under the paper's protocol, val by
    default in training); ``prefix`` a folder above every metric (``live/``).
    """
    series = {"train/loss_total": 50.0, "train/loss_asl": 45.0, "train/loss_scene_sample": 0.9,
              "train/loss_scene_batch": 2.0, "train/lr": 1e-4, f"{split}/mAP": 0.5}
    for name, start in series.items():
        path = root / f"{prefix}{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        stem = path.stem
        stamp = name.startswith("train/")
        lines = [("timestamp\t" if stamp else "") + f"step\t{stem}"]
        for step in range(steps):
            value = start * (0.8 ** step) if "loss" in name else start + 0.05 * step
            if stem == "mAP" and step == 1:
                value = start - 0.02  # a worse epoch: best-so-far and mAP part ways
            # DVCLive's step is the epoch number, from 1
            lines.append((f"{1700000000000 + step}\t" if stamp else "") + f"{step + 1}\t{value}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _write_scenes(path: Path, case: dict) -> Path:
    lines = ["image_path\tsplit\tscene_index\tscene_name",
             f"{path.parent / 'data/images/train/000.png'}\ttrain\t1\tautumn"]
    lines += [f"{p}\ttest\t{k}\t{SCENE_NAMES[k]}" for p, k in zip(case["paths"], case["true"],
                                                                  strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def low_dpi(monkeypatch: pytest.MonkeyPatch) -> None:
    """Smaller PNGs for the tests that check which files are written, not how they look."""
    from salgl.figures import common

    monkeypatch.setattr(common, "DPI", 40)


def _is_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 50 and image.size[1] > 50


def test_make_all_plots_writes_every_file(tmp_path: Path, low_dpi: None) -> None:
    case = _case(tmp_path)
    out = tmp_path / "plots"
    summary = make_all_plots(
        _write_npz(case, tmp_path / "pred.npz"), _write_per_label(tmp_path / "ap.csv"),
        case["memory"], _write_live(tmp_path / "live"), out,
        scenes_tsv=_write_scenes(tmp_path / "scenes.tsv", case), pr_labels=3, cloud_words=10)
    expected = {"training_curves.png", "per_label_ap.png", "pr_curves.png", "scene_matching.png"}
    expected |= {f"scene_{k}_{kind}.png" for k in range(3) for kind in ("cooccurrence", "cloud")}
    expected.add("scene_top_labels.png")
    assert set(summary["figures"]) == expected
    for name in expected:
        _is_png(out / name)
    assert summary["pr_series"] == ["pr_curves.csv"]
    overlay = pd.read_csv(out / "pr_curves.csv")
    assert list(overlay["label"].unique()) == LABELS
    assert not (out / "pr").exists()
    assert not list(out.rglob("*.tmp"))
    match = summary["scene_match"]
    assert match["nmi"] == pytest.approx(1.0) and match["num_images"] == 60
    assert match["true_scene_names"] == SCENE_NAMES and match["num_unmatched"] == 0


def test_make_all_plots_without_scenes_or_history(tmp_path: Path, low_dpi: None) -> None:
    case = _case(tmp_path)
    out = tmp_path / "plots"
    (out).mkdir()
    (out / "scene_7_cloud.png").write_bytes(b"stale")
    summary = make_all_plots(_write_npz(case, tmp_path / "pred.npz"), None, None,
                                   tmp_path / "missing", out)  # no memory: no scene figures
    assert summary["scene_match"] is None
    assert set(summary["figures"]) == {"training_curves.png", "per_label_ap.png",
                                       "pr_curves.png"}
    assert "scene_matching.png" not in summary["figures"]
    assert not (out / "scene_7_cloud.png").exists()
    _is_png(out / "training_curves.png")
    _is_png(out / "per_label_ap.png")


def test_pr_series_ranges_and_perfect_label(tmp_path: Path) -> None:
    from sklearn.metrics import average_precision_score

    from salgl.metrics import average_precision

    case = _case(tmp_path)
    curves = pr_curves(case["scores"], case["targets"], LABELS, case["ignore"])
    written = pd.read_csv(write_pr_series(curves, tmp_path / "pr.csv"))
    assert list(written.columns) == ["recall", "precision", "threshold", "label"]
    for _, frame in written.groupby("label", sort=False):
        recall, precision = frame["recall"].to_numpy(), frame["precision"].to_numpy()
        assert recall.min() >= 0 and recall.max() == pytest.approx(1.0)
        assert np.all(np.diff(recall) >= 0)
        assert precision.min() >= 0 and precision.max() <= 1
        assert frame["threshold"].notna().all()
    cat = written[written["label"] == "cat"]
    assert cat.loc[cat["recall"] == 1.0, "precision"].max() == pytest.approx(1.0)
    keep = case["ignore"][:, 4] == 0
    expected = average_precision_score(case["targets"][keep, 4], case["scores"][keep, 4])
    assert curve_ap(curves["sky"], interpolated=False) == pytest.approx(expected)
    # by default the project's AP: interpolated, as salgl.metrics and per_label_ap.csv
    interpolated = average_precision(case["scores"], case["targets"], case["ignore"])
    assert [curve_ap(curves[name]) for name in LABELS] == pytest.approx(interpolated)
    assert curve_ap(curves["sky"]) > curve_ap(curves["sky"], interpolated=False)


def test_pr_curves_skip_labels_without_counted_positives() -> None:
    targets = np.array([[1, 1], [0, 0], [0, 1]], dtype=np.uint8)
    scores = np.array([[0.9, 0.2], [0.1, 0.3], [0.4, 0.8]], dtype=np.float32)
    ignore = np.array([[1, 0], [0, 0], [0, 0]], dtype=np.uint8)
    curves = pr_curves(scores, targets, ["a", "b"], ignore)
    assert list(curves) == ["b"]


def test_safe_label_names() -> None:
    assert safe_label("Ankle Boot") == "ankle_boot"
    assert safe_label("t-shirt/top") == "t_shirt_top"


def test_scene_matching_permuted_and_independent() -> None:
    rng = np.random.default_rng(1)
    true = rng.integers(0, 4, 20000)
    same = scene_matching(np.array([3, 1, 0, 2])[true], true)
    assert same["nmi"] == pytest.approx(1.0) and same["ari"] == pytest.approx(1.0)
    assert np.asarray(same["contingency"]).sum() == 20000
    independent = scene_matching(rng.integers(0, 4, 20000), true, ["a", "b", "c", "d"])
    assert independent["nmi"] < 0.01 and abs(independent["ari"]) < 0.01
    assert independent["true_scene_names"] == ["a", "b", "c", "d"]
    table = np.asarray(independent["contingency"])
    assert table.shape == (4, 4) and table.sum() == independent["num_images"] == 20000


def test_scene_matching_nmi_of_merged_scenes() -> None:
    true = np.tile([0, 1, 2, 3], 50)
    merged = scene_matching(true // 2, true)  # I = H(learned) = 1 bit, H(true) = 2 bits
    assert merged["nmi"] == pytest.approx(2 / 3) and merged["purity"] == pytest.approx(0.5)
    assert merged["ari"] < 0.6


def test_scene_matching_drops_unknown_and_pads_learned_rows() -> None:
    match = scene_matching(np.array([0, 0, 1, 1]), np.array([0, -1, 1, 1]), num_learned=3)
    assert match["num_images"] == 3
    assert match["contingency"] == [[1, 0], [0, 2], [0, 0]]


def test_scene_label_shares_put_a_label_in_its_only_scene() -> None:
    memory = np.zeros((3, 4, 4))
    memory[1, 0, 0] = 5  # label 0 only in scene 1
    memory[0, 1, 1], memory[2, 1, 1] = 1, 3  # label 1 split 1:3; label 3 never occurs
    memory[0, 2, 2] = memory[1, 2, 2] = memory[2, 2, 2] = 2
    shares = scene_label_shares(memory)
    np.testing.assert_allclose(shares[:, 0], [0, 1, 0])
    np.testing.assert_allclose(shares[:, 1], [0.25, 0, 0.75])
    np.testing.assert_allclose(shares[:, 3], 0)
    np.testing.assert_allclose(shares.sum(0), [1, 1, 1, 0])


def test_conditional_matrix_matches_the_reference() -> None:
    import torch

    from salgl.model.reference import conditional_probabilities

    memory = np.array([[[4, 2, 0], [2, 2, 1], [0, 1, 3]], [[0, 0, 0], [0, 1, 1], [0, 1, 1]]],
                      dtype=np.float32)
    probs = conditional_matrix(memory)
    assert probs[0, 0, 1] == pytest.approx(0.5) and probs[0, 2, 1] == pytest.approx(1 / 3)
    expected = conditional_probabilities(torch.tensor(memory), normalize=False).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def test_scene_figures_for_empty_scene_and_determinism(tmp_path: Path, low_dpi: None) -> None:
    memory = np.zeros((2, 3, 3))
    memory[0] = [[3, 1, 0], [1, 2, 0], [0, 0, 1]]
    heat = plot_scene_heatmaps(memory, ["a", "b", "c"], tmp_path / "a")
    first = plot_scene_clouds(memory, ["a", "b", "c"], tmp_path / "a")
    again = plot_scene_clouds(memory, ["a", "b", "c"], tmp_path / "b")
    assert [p.name for p in heat] == ["scene_0_cooccurrence.png", "scene_1_cooccurrence.png"]
    assert [p.name for p in first] == ["scene_0_cloud.png", "scene_1_cloud.png"]
    for path in heat + first:
        _is_png(path)
    assert first[0].read_bytes() == again[0].read_bytes()
    assert first[0].read_bytes() != first[1].read_bytes()  # the empty scene is a blank figure


def test_true_scenes_for_relative_and_absolute_paths(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    tsv = tmp_path / "data" / "scenes.tsv"
    tsv.parent.mkdir()
    tsv.write_text("image_path\tsplit\tscene_index\tscene_name\n"
                   "data/images/train/001.png\ttrain\t0\tsummer\n"
                   "data/images/test/001.png\ttest\t2\twinter\n"
                   f"{tmp_path / 'data/images/test/002.png'}\ttest\t1\tautumn\n", encoding="utf-8")
    paths = [str(tmp_path / "data/images/test/001.png"),  # absolute vs relative row
             "data/images/test/002.png",  # relative vs absolute row
             "/elsewhere/images/test/001.png",  # only a suffix matches
             "/elsewhere/001.png",  # basename shared by a train and a test image
             "data/images/test/999.png"]
    np.testing.assert_array_equal(true_scenes_for(paths, tsv), [2, 1, 2, -1, -1])
    assert scene_names(read_scenes_tsv(tsv)) == ["summer", "autumn", "winter"]


def test_training_history_reading_and_placeholder(tmp_path: Path, low_dpi: None) -> None:
    live = _write_live(tmp_path / "live")
    with (live / "test" / "mAP.tsv").open("a", encoding="utf-8") as handle:
        handle.write("3\t0.9\n")  # a resumed run logged epoch 3 again: the last value wins
    metrics = read_live_metrics(live)
    assert {"train/loss_total", "train/lr", "test/mAP"} <= set(metrics)
    steps, values = metrics["test/mAP"]
    np.testing.assert_array_equal(steps, [1, 2, 3])
    assert values[-1] == pytest.approx(0.9)
    assert metrics["train/loss_asl"][1][1] == pytest.approx(36.0)
    assert plot_training_curves(live, tmp_path / "curves.png") is True
    assert plot_training_curves(tmp_path / "none", tmp_path / "empty.png") is False
    _is_png(tmp_path / "curves.png")
    _is_png(tmp_path / "empty.png")


def test_per_label_ap_reads_empty_ap_as_missing(tmp_path: Path, low_dpi: None) -> None:
    frame = read_per_label(_write_per_label(tmp_path / "ap.csv"))
    assert frame["label"].tolist() == LABELS
    assert frame["ap"].isna().tolist() == [False, False, False, True, False]
    _is_png(plot_per_label_ap(frame, tmp_path / "ap.png"))


def test_group_heatmaps_and_top_labels_from_a_model_memory(tmp_path: Path, low_dpi: None) -> None:
    from salgl.errors import SalglError
    from salgl.figures.stage import model_figures

    labels = ["car", "bus", "cat", "dog", "cup"]
    memory = np.zeros((2, 5, 5))
    memory[0, :2, :2] = 3.0
    memory[1, 2:4, 2:4] = 2.0
    figures = model_figures(memory, labels, tmp_path,
                            {"vehicles": ["car", "bus"], "animals": ["cat", "dog"]}, top=3)
    names = {p.name for p in figures}
    assert {"group_vehicles.png", "group_animals.png", "scene_top_labels.png",
            "scene_0_cooccurrence.png", "scene_1_cloud.png"} <= names
    for path in figures:
        _is_png(path)
    with pytest.raises(SalglError, match="plots.x.label_groups.pets: label 'hamster'"):
        model_figures(memory, labels, tmp_path / "bad", {"pets": ["cat", "hamster"]},
                      where="plots.x.label_groups")
    assert not (tmp_path / "bad").exists()  # checked before any figure is drawn


# --------------------------------------------------------------------------- figure fixes


def _texts(fig) -> list:
    """Every visible, non-empty text of a laid-out, drawn figure."""
    from matplotlib.text import Text

    from salgl.figures.common import lay_out

    lay_out(fig)
    fig.draw_without_rendering()  # places every text as saving would, without rasterising
    hidden = set()  # labels of ticks outside the view limits exist but are not drawn
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            span = (high - low) * 1e-6
            if not ax.axison:  # an axes drawn without its axes (a cloud, a note)
                hidden.add(id(axis.label))
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not ax.axison or not low - span <= tick.get_loc() <= high + span:
                    hidden |= {id(tick.label1), id(tick.label2)}
    return [t for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip() and id(t) not in hidden]


def _check_readable(fig, min_size: float = 8) -> None:
    """No text below ``min_size`` points, no two texts overlapping, none off the canvas."""
    renderer = fig.canvas.get_renderer()
    texts = _texts(fig)
    boxes = []
    canvas = fig.bbox
    for text in texts:
        assert text.get_fontsize() >= min_size, (text.get_text(), text.get_fontsize())
        box = text.get_window_extent(renderer).expanded(0.98, 0.9)  # glyph padding
        assert box.x0 >= canvas.x0 - 1 and box.x1 <= canvas.x1 + 1, text.get_text()
        assert box.y0 >= canvas.y0 - 1 and box.y1 <= canvas.y1 + 1, text.get_text()
        boxes.append((text.get_text(), box))
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            assert not box_a.overlaps(box_b), f"{a!r} overlaps {b!r}"


def _colourbars(fig) -> list:
    return [im.colorbar for ax in fig.axes for im in ax.images if im.colorbar is not None]


def _four_scene_memory() -> tuple[np.ndarray, list[str]]:
    """4 scenes of 6 labels; off the diagonal no P(j | i) above 0.45."""
    rng = np.random.default_rng(3)
    labels = ["t-shirt", "pullover", "coat", "shirt", "bag", "sandal"]
    targets = (rng.random((400, 6)) < 0.25).astype(np.float64)
    scenes = np.eye(4)[rng.integers(0, 4, 400)]
    memory = np.einsum("nk,ni,nj->kij", scenes, targets, targets)
    return memory, labels


def test_grid_fits_the_scene_count() -> None:
    assert grid_shape(1) == (1, 1)
    assert grid_shape(2) == (1, 2)
    assert grid_shape(3) == (1, 3)
    assert grid_shape(4) == (2, 2)
    assert grid_shape(6) == (2, 3)
    assert grid_shape(8) == (2, 4)
    assert grid_shape(9) == (3, 3)
    for count in range(1, 30):
        rows, cols = grid_shape(count)
        assert rows * cols >= count and rows * cols - count < cols and rows <= cols


def test_group_heatmap_scale_excludes_the_diagonal() -> None:
    from salgl.figures.heatmaps import group_figure

    memory, labels = _four_scene_memory()
    probs = conditional_matrix(memory)
    fig = group_figure(memory, probs, labels, [0, 1, 2, 3], "tops")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 4
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in panels} == {(2, 2)}
    block = probs[:, :4, :4]
    off = block[:, ~np.eye(4, dtype=bool)]
    for ax in panels:
        image = ax.images[0]
        low, high = image.get_clim()
        assert low == 0 and off.max() <= high < 1 and high <= off.max() + 0.05
        assert np.ma.getmaskarray(image.get_array()).diagonal().all()  # grey, off the scale
    assert len(_colourbars(fig)) == 1
    cell_numbers = [t for ax in panels for t in ax.texts]
    assert len(cell_numbers) == 4 * 12 and min(t.get_fontsize() for t in cell_numbers) >= 8
    _check_readable(fig)


def test_scene_heatmap_has_colourbar_and_honest_counts() -> None:
    from salgl.figures.heatmaps import colour_limit, scene_heatmap_figure, scene_title

    memory, labels = _four_scene_memory()
    probs = conditional_matrix(memory)
    vmax = colour_limit(probs)
    assert 0.3 < vmax < 1
    title = scene_title(0, 20607)
    assert "20,607 co-occurrence memory counts, accumulated over training" in title
    assert "label occurrences" not in title  # they are not counts of the dataset's labels
    fig = scene_heatmap_figure(probs[0], labels, title, vmax)
    assert fig.axes[0].images[0].get_clim() == (0, vmax)
    assert len(_colourbars(fig)) == 1
    _check_readable(fig)


def test_top_labels_scale_fits_and_marks_one_over_k() -> None:
    from salgl.figures.scenes import top_labels_figure

    memory, labels = _four_scene_memory()
    shares = scene_label_shares(memory)
    fig = top_labels_figure(memory, labels, top=6)
    assert len(fig.axes) == 4
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes} == {(2, 2)}
    for ax in fig.axes:
        assert shares.max() < ax.get_xlim()[1] < 0.8  # not 0-1 when the largest share is ~0.4
        assert any(np.allclose(line.get_xdata(), 0.25) for line in ax.lines)  # 1/K, K = 4
    assert any("1/K = 0.25" in t.get_text() for t in fig.legends[0].get_texts())
    _check_readable(fig)


def test_cloud_colour_means_the_share_and_reads_on_white() -> None:
    from matplotlib.colors import Normalize

    from salgl.figures.clouds import MEANING, cloud_colormap, cloud_figure

    def contrast_with_white(rgb: np.ndarray) -> np.ndarray:
        """WCAG contrast ratio of sRGB colours against white (3 is the floor for large text)."""
        linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
        return 1.05 / (linear @ [0.2126, 0.7152, 0.0722] + 0.05)

    cmap = cloud_colormap()
    assert contrast_with_white(cmap(np.linspace(0, 1, 50))[:, :3]).min() >= 3  # no yellow
    weights = {"coat": 0.6, "bag": 0.1}
    fig = cloud_figure(weights, f"Scene 0: word size and colour = {MEANING}", 10, 0.6, 4)
    assert len(fig.axes) == 2  # the cloud and its colourbar
    image = np.asarray(fig.axes[0].images[0].get_array()).reshape(-1, 3) / 255
    ink = image[image.min(1) < 0.95]
    colours, counts = np.unique(ink, axis=0, return_counts=True)
    words = colours[counts > 0.05 * len(ink)]  # the glyphs' fill, not their antialiased rims
    assert len(words) == 2 and contrast_with_white(words).min() >= 3
    by_share = {tuple(np.round(c, 2)) for c in words}  # each word in its share's colour
    assert by_share == {tuple(np.round(cmap(Normalize(0, 0.6)(w))[:3], 2))
                        for w in weights.values()}
    assert "colour" in fig.axes[0].get_title()
    _check_readable(fig)


@pytest.mark.parametrize(("split", "prefix", "name"), [("val", "", "Validation"),
                                                        ("test", "", "Test"),
                                                        ("val", "live/", "Validation")])
def test_training_curves_find_the_selection_split(tmp_path: Path, split: str, prefix: str,
                                                  name: str) -> None:
    from matplotlib.text import Text

    from salgl.figures.curves import training_figure

    live = _write_live(tmp_path / "dvclive" / "plots" / "metrics", split=split, prefix=prefix)
    fig = training_figure(read_live_metrics(live))
    texts = [t.get_text() for t in fig.findobj(Text)]
    assert not any(str(tmp_path) in t or "metrics" in t for t in texts)  # no path in a title
    assert "not logged" not in texts  # every panel found its series
    lr_ax, map_ax = fig.axes[2], fig.axes[3]
    assert "per epoch" in lr_ax.get_title()
    assert map_ax.get_title().startswith(name) and "interpolated AP" in map_ax.get_title()
    current, best = map_ax.lines[0], map_ax.lines[1]
    assert current.get_drawstyle() == "default" and best.get_drawstyle() == "steps-post"
    assert not np.allclose(current.get_ydata(), best.get_ydata())  # the epoch-2 dip shows
    assert name.lower() in fig.get_suptitle().lower() and str(tmp_path) not in fig.get_suptitle()
    if prefix:  # drawing is slow: check the layout of one of the three
        _check_readable(fig)


def test_ap_variant_is_named(tmp_path: Path) -> None:
    from salgl.figures.ap import per_label_figure
    from salgl.figures.pr import pr_figure

    fig = per_label_figure(read_per_label(_write_per_label(tmp_path / "ap.csv")))
    ax = fig.axes[0]
    assert "interpolated AP" in ax.get_title() and "non-interpolated" not in ax.get_title()
    assert "interpolated" in ax.get_xlabel()
    _check_readable(fig)
    case = _case(tmp_path)
    fig = pr_figure(pr_curves(case["scores"], case["targets"], LABELS, case["ignore"]), 3)
    assert "interpolated AP" in fig.get_suptitle() and "non-interpolated" not in fig.get_suptitle()
    _check_readable(fig)


# --------------------------------------------------------------------------- issue 21, point 8


def _numbers_right_of_axes(fig, count: int) -> list[str]:
    """The bar values of each axes: ``count`` numbers per axes with bars, each right of its
    axes, where no bar, marker or reference line (all clipped to the axes) can reach it."""
    from salgl.figures.common import lay_out

    lay_out(fig)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    numbers = []
    for ax in fig.axes:
        if not ax.patches:
            continue
        mine = [t for t in ax.texts if t.get_text().replace(".", "", 1).isdigit()]
        assert len(mine) == count
        for text in mine:
            assert text.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
            numbers.append(text.get_text())
    return numbers


def test_pr_panels_give_the_tables_ap_and_the_prior(tmp_path: Path) -> None:
    """One panel per label, best AP first; its title's AP is per_label_ap's (interpolated),
    its dashed line the label's positive rate; with fewer panels, the best and the worst."""
    import re

    from salgl.figures.ap import per_label_frame
    from salgl.figures.pr import pr_figure
    from salgl.predictions import Predictions

    case = _case(tmp_path)
    predictions = Predictions.load(_write_npz(case, tmp_path / "pred.npz"))
    table = per_label_frame(predictions, LABELS).set_index("label")
    curves = pr_curves(case["scores"], case["targets"], LABELS, case["ignore"])
    fig = pr_figure(curves, 10)
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == len(LABELS)
    shown = []
    for ax in panels:
        name, numbers = ax.get_title().rsplit("\n", 1)
        ap, prior = map(float, re.fullmatch(r"AP ([\d.]+) · prior ([\d.]+)", numbers).groups())
        assert ap == pytest.approx(table.loc[name, "ap"], abs=5e-4)
        assert prior == pytest.approx(table.loc[name, "prevalence"], abs=5e-4)
        dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert len(dashed) == 1
        assert dashed[0].get_ydata() == pytest.approx([table.loc[name, "prevalence"]] * 2)
        shown.append(name)
    assert shown == table["ap"].sort_values(ascending=False, kind="stable").index.tolist()
    assert fig.get_suptitle().startswith("Precision-recall per label: all 5 labels")
    assert "interpolated AP" in fig.get_suptitle()
    _check_readable(fig)

    fig = pr_figure(curves, 3)
    names = [ax.get_title().split("\n")[0] for ax in fig.axes if ax.axison]
    assert names == shown[:2] + shown[-1:]
    assert "the 2 best and the worst of 5 labels" in fig.get_suptitle()
    assert sum(not ax.axison for ax in fig.axes) == 0  # 3 panels: 1 x 3, no empty cell


def test_per_label_ap_numbers_match_the_pr_titles_and_clear_the_marks(tmp_path: Path) -> None:
    from salgl.figures.ap import per_label_figure

    frame = read_per_label(_write_per_label(tmp_path / "ap.csv"))
    fig = per_label_figure(frame)
    scored = frame.dropna(subset=["ap"]).sort_values("ap", kind="stable")
    assert _numbers_right_of_axes(fig, len(scored)) == [f"{v:.3f}" for v in scored["ap"]]
    _check_readable(fig)


def test_loss_axis_says_how_the_logged_loss_is_reduced(tmp_path: Path) -> None:
    """The axis names the reduction, and the reduction is what salgl.losses computes: the
    ASL of a batch is 1000 times the mean of its image-label pairs' losses."""
    import torch

    from salgl.figures.curves import training_figure
    from salgl.losses import asymmetric_loss

    fig = training_figure(read_live_metrics(_write_live(tmp_path / "live")))
    loss_ax, scene_ax = fig.axes[0], fig.axes[1]
    assert loss_ax.get_ylabel().startswith("loss per image-label pair × 1000")
    assert "epoch mean" in loss_ax.get_ylabel() and "epoch mean" in scene_ax.get_ylabel()
    legend = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert legend[0].startswith("loss_total: ASL + scene weight")
    assert "mean over the batch's images and labels × 1000" in legend[1]
    scene = " ".join(t.get_text() for t in scene_ax.get_legend().get_texts())
    assert "(nats" in scene and "× 100" in scene
    _check_readable(fig)

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, generator=generator)
    targets = (torch.rand(3, 4, generator=generator) < 0.5).float()
    pairs = [asymmetric_loss(logits[i:i + 1, j:j + 1], targets[i:i + 1, j:j + 1]) / 1000
             for i in range(3) for j in range(4)]
    assert float(asymmetric_loss(logits, targets)) == pytest.approx(
        1000 * float(torch.stack(pairs).mean()), rel=1e-5)


@pytest.mark.parametrize(("top", "bars", "title"), [(10, 6, "All 6 labels per scene"),
                                                    (6, 6, "All 6 labels per scene"),
                                                    (3, 3, "Top 3 of 6 labels per scene")])
def test_top_labels_title_counts_what_it_shows(top: int, bars: int, title: str) -> None:
    from salgl.figures.scenes import top_labels_figure

    memory, labels = _four_scene_memory()
    fig = top_labels_figure(memory, labels, top=top)
    assert fig.get_suptitle().startswith(title)
    assert all(len(ax.patches) == bars for ax in fig.axes)
    shares = scene_label_shares(memory)
    expected = [f"{v:.2f}" for k in range(4) for v in np.sort(shares[k])[::-1][:bars][::-1]]
    assert _numbers_right_of_axes(fig, bars) == expected
    if top == 10:
        _check_readable(fig)


def _reading_tables(tmp_path: Path) -> tuple[list, list]:
    """ablation_differences.csv and ablation_verdicts.csv as the summary writes them, read
    back: a-d with 3 converged seeds of 5 ("does not help"), a-b with none ("unreadable")."""
    from salgl.ablation.figure import read_rows
    from salgl.ablation.summary import ALL_RUNS, CONVERGED, UNREADABLE, to_csv

    def row(comparison, data, runs, seeds, mean, t, boot):
        return {"comparison": comparison, "data": data, "runs": runs,
                **{f"seed_{k}": v for k, v in seeds.items()}, "seeds": len(seeds),
                "mean": mean, "t_lower": t[0], "t_upper": t[1],
                "bootstrap_low": boot[0], "bootstrap_high": boot[1]}

    differences = [
        row("a-b", "positive", ALL_RUNS, {0: -0.01, 1: 0.004}, -0.003, (-0.03, 0.02),
            (-0.008, 0.002)),
        row("a-b", "control", ALL_RUNS, {0: 0.002, 1: -0.006}, -0.002, (-0.02, 0.02),
            (-0.006, 0.001)),
        row("a-b", "DiD", ALL_RUNS, {0: -0.012, 1: 0.01}, -0.001, (-0.04, 0.04),
            (-0.006, 0.005)),
        row("a-d", "positive", CONVERGED, {0: -0.029, 1: -0.0195, 3: -0.0195}, -0.0227,
            (-0.0319, -0.0134), (-0.029, -0.0147)),
        row("a-d", "control", CONVERGED, {0: 0.0099, 1: -0.0021, 3: 0.0065}, 0.0048,
            (-0.0056, 0.0152), (-0.0008, 0.0103)),
        row("a-d", "DiD", CONVERGED, {0: -0.0389, 1: -0.0174, 3: -0.026}, -0.0274,
            (-0.0456, -0.0092), (-0.0358, -0.0175)),
    ]
    verdicts = [{"comparison": "a-b", "seeds": 0, "void_seeds": 2, "verdict": UNREADABLE},
                {"comparison": "a-d", "seeds": 3, "void_seeds": 2, "delta_mean": -0.0227,
                 "delta_t_upper": -0.0134, "verdict": "does not help"}]
    (tmp_path / "differences.csv").write_text(to_csv(differences), encoding="utf-8")
    (tmp_path / "verdicts.csv").write_text(to_csv(verdicts), encoding="utf-8")
    return read_rows(tmp_path / "differences.csv"), read_rows(tmp_path / "verdicts.csv")


def test_ablation_figure_shows_each_difference_its_bounds_and_the_verdict(
        tmp_path: Path) -> None:
    from salgl.ablation.figure import ablation_figure, ablation_result_figure
    from salgl.ablation.reading import ReadingRule

    differences, verdicts = _reading_tables(tmp_path)
    runs = [{"data": d, "variant": v, "seed": s, "mAP": 0.55 + 0.01 * s, "void": s == 2}
            for d in ("positive", "control") for v in "abd" for s in range(3)]
    rule = ReadingRule(scene_data="positive", control="control")
    titles = {"a": "SALGL", "b": "1 scene", "d": "plain"}
    fig = ablation_result_figure(runs, differences, ["positive", "control"], titles, verdicts,
                                 rule)
    ax = next(a for a in fig.axes if a.get_title().startswith("Paired differences"))
    by_gid = {artist.get_gid(): artist for artist in ax.get_children() if artist.get_gid()}
    heading = by_gid["verdict a-d"]
    assert heading.get_text() == ("a-d (SALGL − plain): does not help, 3 converged seeds "
                                  "(2 with a void run left out)")
    assert heading.get_color() == "tab:red"
    assert by_gid["verdict a-b"].get_text().endswith(": unreadable: every seed has a void run")
    for row in differences:
        gid = f"{row['comparison']} {row['data']}"
        if row["comparison"] == "a-b":  # no converged seed: only the mean with void runs
            assert f"mean {gid}" not in by_gid and f"t bounds {gid}" not in by_gid
            assert by_gid[f"with void {gid}"].get_xdata()[0] == pytest.approx(row["mean"])
            continue
        assert by_gid[f"mean {gid}"].get_xdata()[0] == pytest.approx(row["mean"])
        (low, _), (high, _) = by_gid[f"t bounds {gid}"].get_segments()[0]
        assert (low, high) == pytest.approx((row["t_lower"], row["t_upper"]))
        (low, _), (high, _) = by_gid[f"bootstrap {gid}"].get_segments()[0]
        assert (low, high) == pytest.approx((row["bootstrap_low"], row["bootstrap_high"]))
        assert sorted(by_gid[f"seeds {gid}"].get_xdata()) == pytest.approx(
            sorted(row[f"seed_{k}"] for k in (0, 1, 3)))
    zero = [a for a in ax.collections if a.get_gid() == "zero"]
    assert len(zero) == 2 and all(s[0][0] == 0 for z in zero for s in z.get_segments())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Student t bounds (one-sided 95% each)" in legend and "min_difference 0.01" in legend
    _check_readable(fig)
    assert ablation_figure(runs, differences, ["positive", "control"], tmp_path / "a.png",
                           titles, verdicts, rule).stat().st_size > 10_000
    fig = ablation_result_figure(runs, differences, ["positive", "control"], titles)
    assert "verdict" not in fig.get_suptitle()  # none given: none claimed
    headings = [t.get_text() for t in fig.findobj(lambda a: (a.get_gid() or "").startswith(
        "verdict "))]
    assert headings == ["a-b (SALGL − 1 scene)", "a-d (SALGL − plain)"]


def test_ablation_rows_from_a_missing_file_name_it(tmp_path: Path) -> None:
    from tree_snapshot import changes, tree_snapshot

    from salgl.ablation.figure import read_rows
    from salgl.errors import SalglError

    before = tree_snapshot(tmp_path)
    with pytest.raises(SalglError, match=r"ablation_verdicts\.csv: missing \(run the ablation "
                                         r"summary first\)"):
        read_rows(tmp_path / "ablation_verdicts.csv")
    assert changes(before, tree_snapshot(tmp_path)) == []
    (tmp_path / "short.csv").write_text("comparison,data\na-d,positive\n", encoding="utf-8")
    before = tree_snapshot(tmp_path)
    with pytest.raises(SalglError, match=r"short\.csv: missing columns runs, mean"):
        read_rows(tmp_path / "short.csv", ["comparison", "runs", "mean"])
    assert changes(before, tree_snapshot(tmp_path)) == []


def test_a_scene_memory_with_almost_no_counts_is_said_not_drawn(tmp_path: Path,
                                                                low_dpi: None,
                                                                monkeypatch) -> None:
    """An EMA still near its start holds a fraction of a count per cell: its P(j | i) would
    draw 1.00s from nothing. Such a scene gets a placeholder that says why."""
    import salgl.figures.heatmaps as heatmaps

    said = []
    monkeypatch.setattr(heatmaps, "blank", lambda path, title, message: said.append(
        (path.name, message)) or path)
    memory, labels = _four_scene_memory()
    memory = memory.copy()
    memory[1] *= 0.4 / memory[1].diagonal().sum()  # 0.4 counts in scene 1
    written = plot_scene_heatmaps(memory, labels, tmp_path)
    assert len(written) == memory.shape[0]
    assert said == [("scene_1_cooccurrence.png", "only 0 co-occurrence memory counts, "
                     "accumulated over training: too few to estimate\nP(j | i) (an untrained "
                     "or barely trained model)")]
