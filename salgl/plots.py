"""Figures and plot series of a trained SALGL model: training history, AP, PR curves, scenes.

Heavy libraries (matplotlib, sklearn, wordcloud, pandas) are imported inside the functions that
need them, so importing this module stays cheap. Figures are drawn on matplotlib's Agg canvas
without pyplot, so no GUI backend is touched and nothing is kept in pyplot's figure registry;
every PNG is written atomically.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import numpy as np

from salgl.atomic import atomic_dir, atomic_path
from salgl.errors import SalglError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
EPS = 1e-8
CLOUD_SEED = 0
_SCENE_FILE = re.compile(r"scene_\d+_(cooccurrence|cloud)\.png")
_AMBIGUOUS = -2


# --------------------------------------------------------------------------- figure helpers


def _figure(width: float, height: float) -> Figure:
    """A Figure on an Agg canvas: no pyplot state, freed as soon as it is dropped."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    """Lay out, write atomically (the temporary name ends in .tmp, hence format=) and release."""
    import warnings

    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tight_layout on very long tick labels
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    fig.clear()
    return path


def _blank(path: str | Path, title: str, message: str) -> Path:
    """A titled placeholder, so a figure the pipeline expects always exists."""
    fig = _figure(6, 3.5)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="0.4",
            transform=ax.transAxes)
    return _save(fig, path)


def safe_label(name: str) -> str:
    """A file-name-safe form of a label: lowercase, every non-alphanumeric as ``_``."""
    return re.sub(r"[^a-z0-9]", "_", str(name).lower()) or "label"


def _unique_names(labels: Sequence[str]) -> list[str]:
    """Safe names, suffixed where two labels would collide on disk."""
    seen: set[str] = set()
    names = []
    for i, label in enumerate(labels):
        name = safe_label(label)
        if name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        names.append(name)
    return names


# --------------------------------------------------------------------------- PR curves


def _pad_threshold(thresholds: np.ndarray) -> float:
    """Threshold of sklearn's closing (recall 0, precision 1) point: above every score."""
    top = float(thresholds.max()) if thresholds.size else 0.0
    return 1.0 if top < 1.0 else float(np.nextafter(top, np.inf))


def _label_curve(scores: np.ndarray, targets: np.ndarray) -> pd.DataFrame:
    """One label's PR curve with recall ascending (sklearn returns it descending)."""
    import pandas as pd
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(targets, scores)
    thresholds = np.append(thresholds, _pad_threshold(thresholds))
    frame = pd.DataFrame({"recall": recall[::-1], "precision": precision[::-1],
                          "threshold": thresholds[::-1]})
    return frame.sort_values("recall", kind="stable").reset_index(drop=True)


def pr_curves(scores: np.ndarray, targets: np.ndarray, labels: Sequence[str],
              ignore: np.ndarray | None = None) -> dict[str, pd.DataFrame]:
    """PR curve per label that has a positive (ignored pairs left out), for `dvc plots`."""
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 2 or scores.shape[1] != len(labels):
        raise SalglError(f"pr_curves: scores {scores.shape}, targets {targets.shape} and "
                         f"{len(labels)} labels do not match")
    valid = np.ones(targets.shape, bool) if ignore is None else np.asarray(ignore) == 0
    curves = {}
    for c, label in enumerate(labels):
        keep = valid[:, c]
        y = (targets[keep, c] > 0).astype(np.int64)
        if y.sum() > 0:
            curves[str(label)] = _label_curve(scores[keep, c], y)
    return curves


def write_pr_series(curves: Mapping[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """One CSV per label (x: recall, y: precision) as `out_dir/<safe_label>.csv`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in zip(_unique_names(list(curves)), curves.values(), strict=True):
        path = out_dir / f"{name}.csv"
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
        written.append(path)
    return written


def curve_ap(frame: pd.DataFrame) -> float:
    """Step-wise AP of a recall-ascending curve (sklearn's average_precision_score)."""
    recall = frame["recall"].to_numpy()
    precision = frame["precision"].to_numpy()
    return float(np.sum(np.diff(recall) * precision[1:]))


def _pick_curves(curves: Mapping[str, pd.DataFrame], max_labels: int
                 ) -> list[tuple[str, float]]:
    """The best and worst labels by AP when there are too many curves to read."""
    ranked = sorted(((name, curve_ap(f)) for name, f in curves.items()), key=lambda x: -x[1])
    if len(ranked) <= max_labels:
        return ranked
    top = (max_labels + 1) // 2
    return ranked[:top] + ranked[len(ranked) - (max_labels - top):]


def plot_pr_curves(curves: Mapping[str, pd.DataFrame], out_png: str | Path,
                   max_labels: int = 10) -> Path:
    """All PR curves in one axes; the top/bottom labels by AP when there are many."""
    if not curves:
        return _blank(out_png, "Precision-recall curves", "no label has a positive")
    from matplotlib import colormaps

    chosen = _pick_curves(curves, max(1, max_labels))
    cmap = colormaps["tab10" if len(chosen) <= 10 else "tab20"]
    fig = _figure(8.5, 5.5)
    ax = fig.add_subplot()
    top = (len(chosen) + 1) // 2 if len(chosen) < len(curves) else len(chosen)
    for i, (name, ap) in enumerate(chosen):
        frame = curves[name]
        ax.plot(frame["recall"], frame["precision"], drawstyle="steps-pre", lw=1.6,
                ls="-" if i < top else "--", color=cmap(i % cmap.N), label=f"{name} (AP {ap:.3f})")
    title = "Precision-recall curves"
    if top < len(chosen):
        title += (f": {top} best (solid) and {len(chosen) - top} worst (dashed) "
                  f"of {len(curves)} labels by AP")
    ax.set(xlim=(0, 1.01), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    return _save(fig, out_png)


# --------------------------------------------------------------------------- training history


def _read_metric_tsv(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values) of one DVCLive metric file; the last row wins for a repeated step."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            fields = reader.fieldnames or []
            column = path.stem if path.stem in fields else (fields[-1] if fields else None)
            if column is None or "step" not in fields or column == "step":
                return None
            by_step: dict[int, float] = {}
            for row in reader:
                try:
                    by_step[int(float(row["step"]))] = float(row[column])
                except (TypeError, ValueError):
                    continue
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if not by_step:
        return None
    steps = np.array(sorted(by_step))
    return steps, np.array([by_step[s] for s in steps])


def read_live_metrics(live_metrics_dir: str | Path | None
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every DVCLive metric under the folder by name (``train/loss_total``); {} if missing."""
    if live_metrics_dir is None or not Path(live_metrics_dir).is_dir():
        return {}
    root = Path(live_metrics_dir)
    metrics = {}
    for path in sorted(root.rglob("*.tsv")):
        series = _read_metric_tsv(path)
        if series is not None:
            metrics[path.relative_to(root).with_suffix("").as_posix()] = series
    return metrics


def _plot_series(ax: Axes, metrics: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 names: Sequence[str], title: str, ylabel: str) -> None:
    """Lines of the named metrics against epoch (DVCLive step + 1), or a 'none logged' note."""
    drawn = [n for n in names if n in metrics]
    for name in drawn:
        steps, values = metrics[name]
        ax.plot(steps + 1, values, marker="o", ms=3, lw=1.4, label=name.split("/")[-1])
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    else:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", color="0.5",
                transform=ax.transAxes)


def _loss_groups(metrics: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Classification losses (total, asl) apart from the much smaller scene terms."""
    losses = sorted(n for n in metrics if n.startswith("train/loss_"))
    main = [n for n in ("train/loss_total", "train/loss_asl") if n in losses]
    return main, [n for n in losses if n not in main]


def plot_training_curves(live_metrics_dir: str | Path | None, out_png: str | Path) -> bool:
    """Losses, learning rate and test mAP per epoch; False (and a placeholder) without history."""
    metrics = read_live_metrics(live_metrics_dir)
    if not metrics:
        _blank(out_png, "Training curves", "no training history")
        return False
    main, scene = _loss_groups(metrics)
    fig = _figure(11, 7.5)
    axes = fig.subplots(2, 2).ravel()
    _plot_series(axes[0], metrics, main, "Training loss", "loss (epoch mean)")
    _plot_series(axes[1], metrics, scene, "Scene regularisers", "loss (epoch mean)")
    _plot_series(axes[2], metrics, ["train/lr"], "Learning rate (end of epoch)", "lr")
    if "train/lr" in metrics and np.all(metrics["train/lr"][1] > 0):
        axes[2].set_yscale("log")
    _plot_series(axes[3], metrics, ["test/mAP", "test/best_mAP"], "Test mAP (EMA model)", "mAP")
    fig.suptitle(f"Training history: {Path(str(live_metrics_dir)).as_posix()}", fontsize=10)
    _save(fig, out_png)
    return True


# --------------------------------------------------------------------------- per-label AP


def read_per_label(per_label: str | Path | pd.DataFrame) -> pd.DataFrame:
    """The per-label AP table; empty AP cells (labels without positives) become NaN."""
    import pandas as pd

    if isinstance(per_label, pd.DataFrame):
        frame = per_label.copy()
    else:
        frame = pd.read_csv(per_label, keep_default_na=False, dtype={"label": str},
                            na_values={"ap": [""], "ap_noninterp": [""]})
    missing = {"label", "ap", "prevalence"} - set(frame.columns)
    if missing:
        raise SalglError(f"{per_label if not isinstance(per_label, pd.DataFrame) else 'table'}:"
                         f" missing columns {sorted(missing)}")
    frame["ap"] = pd.to_numeric(frame["ap"], errors="coerce")
    frame["prevalence"] = pd.to_numeric(frame["prevalence"], errors="coerce")
    return frame


def _bar_values(ax: Axes, values: np.ndarray) -> None:
    """AP printed at each bar's end: inside long bars, just outside short ones."""
    for yi, value in enumerate(values):
        inside = value >= 0.15
        ax.text(value - 0.01 if inside else value + 0.01, yi, f"{value:.2f}", va="center",
                ha="right" if inside else "left", fontsize=7,
                color="white" if inside else "black")


def plot_per_label_ap(per_label: str | Path | pd.DataFrame, out_png: str | Path) -> Path:
    """Bars of AP by label (best on top) against the label prior (prevalence) and the mean."""
    frame = read_per_label(per_label)
    scored = frame.dropna(subset=["ap"]).sort_values("ap", kind="stable")
    skipped = len(frame) - len(scored)
    if scored.empty:
        return _blank(out_png, "Per-label AP", "no label has a positive")
    n = len(scored)
    height = min(0.28 * n + 2.2, 40)
    fig = _figure(8, height)
    ax = fig.add_subplot()
    y = np.arange(n)
    ax.barh(y, scored["ap"], color="tab:blue", alpha=0.8, label="AP")
    ax.scatter(scored["prevalence"], y, marker="|", s=160, color="tab:red", zorder=3,
               label="label prior (prevalence)")
    mean = float(scored["ap"].mean())
    ax.axvline(mean, color="k", ls="--", lw=1, label=f"mean AP {mean:.3f}")
    ax.set_yticks(y, scored["label"].astype(str), fontsize=8 if n > 30 else 9)
    ax.set(xlim=(0, 1), ylim=(-0.6, n - 0.4), xlabel="average precision")
    title = f"Per-label AP ({n} labels)"
    if skipped:
        title += f"; {skipped} without positives left out"
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    if n <= 60:
        _bar_values(ax, scored["ap"].to_numpy())
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.6 / (height - 1.2)),
              ncol=3, fontsize=8, frameon=False)
    return _save(fig, out_png)


# --------------------------------------------------------------------------- scene memory


def as_cooccurrence(cooccurrence: Any, num_labels: int | None = None) -> np.ndarray:
    """A float64 (S, C, C) array from a numpy array or a torch tensor, checked."""
    if hasattr(cooccurrence, "detach"):
        cooccurrence = cooccurrence.detach().cpu().float().numpy()
    memory = np.asarray(cooccurrence, dtype=np.float64)
    if memory.ndim != 3 or memory.shape[1] != memory.shape[2]:
        raise SalglError(f"co-occurrence memory must be (scenes, C, C), got {memory.shape}")
    if num_labels is not None and memory.shape[1] != num_labels:
        raise SalglError(f"co-occurrence memory has {memory.shape[1]} labels, "
                         f"expected {num_labels}")
    return memory


def conditional_matrix(cooccurrence: Any) -> np.ndarray:
    """P[k, i, j] = M[k, j, i] / (M[k, i, i] + eps) = P(j | i, scene k), not row-normalised."""
    memory = as_cooccurrence(cooccurrence)
    diag = np.diagonal(memory, axis1=1, axis2=2)
    return memory.transpose(0, 2, 1) / (diag[..., :, None] + EPS)


def scene_label_shares(cooccurrence: Any) -> np.ndarray:
    """(S, C): the share of each label's occurrences that fell in each scene (0 if never seen)."""
    diag = np.diagonal(as_cooccurrence(cooccurrence), axis1=1, axis2=2).clip(min=0)
    total = diag.sum(0, keepdims=True)
    return np.divide(diag, total, out=np.zeros_like(diag), where=total > 0)


def _occurrences(memory: np.ndarray, k: int) -> float:
    return float(np.trace(memory[k]))


def _heatmap_axes(ax: Axes, labels: Sequence[str], xlabel: str, ylabel: str) -> None:
    """Label names on both axes; the figure grows with the labels, so the font need not shrink."""
    n = len(labels)
    size = 9 if n <= 20 else 8
    ax.set_xticks(np.arange(n), [str(s) for s in labels], rotation=90, fontsize=size)
    ax.set_yticks(np.arange(n), [str(s) for s in labels], fontsize=size)
    ax.set(xlabel=xlabel, ylabel=ylabel)


def _annotate(ax: Axes, texts: np.ndarray, dark: np.ndarray, size: float = 7) -> None:
    """Write a text per cell, white on dark cells."""
    for (i, j), text in np.ndenumerate(texts):
        ax.text(j, i, text, ha="center", va="center", fontsize=size,
                color="white" if dark[i, j] else "black")


def _scene_heatmap(probs: np.ndarray, labels: Sequence[str], title: str,
                   path: Path) -> Path:
    n = len(labels)
    side = min(max(5.5, 0.32 * n + 3), 30)
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    off_diagonal = np.ma.masked_where(np.eye(n, dtype=bool), probs.clip(0, 1))
    image = ax.imshow(off_diagonal, vmin=0, vmax=1, cmap=cmap)
    _heatmap_axes(ax, labels, "label j", "given label i")
    if n <= 15:
        texts = np.vectorize(lambda v: f"{v:.2f}")(probs)
        np.fill_diagonal(texts, "")
        _annotate(ax, texts, probs < 0.5)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="P(j | i, scene)")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_scene_heatmaps(cooccurrence: Any, labels: Sequence[str],
                        out_dir: str | Path) -> list[Path]:
    """One PNG per learned scene of P(label j | label i, scene k); empty scenes get a blank."""
    memory = as_cooccurrence(cooccurrence, len(labels))
    probs = conditional_matrix(memory)
    out_dir = Path(out_dir)
    written = []
    for k in range(memory.shape[0]):
        path = out_dir / f"scene_{k}_cooccurrence.png"
        total = _occurrences(memory, k)
        if total <= 0:
            written.append(_blank(path, f"Scene {k}: label co-occurrence",
                                  "empty memory (no label occurrences)"))
            continue
        title = (f"Scene {k}: P(label j | label i), {total:,.0f} label occurrences\n"
                 "(diagonal P(i | i) = 1 shown grey)")
        written.append(_scene_heatmap(probs[k], labels, title, path))
    return written


def _cloud_image(weights: Mapping[str, float], max_words: int) -> np.ndarray:
    """A word cloud with the bundled font and a fixed seed, so reruns give the same picture."""
    from wordcloud import WordCloud

    cloud = WordCloud(width=800, height=450, background_color="white", max_words=max_words,
                      random_state=CLOUD_SEED, prefer_horizontal=1.0, colormap="viridis",
                      relative_scaling=0.6, min_font_size=8, margin=4)
    return cloud.generate_from_frequencies(dict(weights)).to_array()


def plot_scene_clouds(cooccurrence: Any, labels: Sequence[str], out_dir: str | Path,
                      max_words: int = 40) -> list[Path]:
    """One word cloud per scene, each label sized by the share of its occurrences in the scene."""
    memory = as_cooccurrence(cooccurrence, len(labels))
    shares = scene_label_shares(memory)
    out_dir = Path(out_dir)
    written = []
    for k in range(memory.shape[0]):
        path = out_dir / f"scene_{k}_cloud.png"
        title = f"Scene {k}: {_occurrences(memory, k):,.0f} label occurrences"
        weights = {str(labels[i]): float(w) for i, w in enumerate(shares[k]) if w > 0}
        if not weights:
            written.append(_blank(path, title, "no labels in this scene"))
            continue
        fig = _figure(8, 5)
        ax = fig.add_subplot()
        ax.imshow(_cloud_image(weights, max(1, max_words)), interpolation="bilinear")
        ax.set_axis_off()
        ax.set_title(f"{title} (word size: share of the label's occurrences)", fontsize=10)
        written.append(_save(fig, path))
    return written


def _group_indices(labels: Sequence[str], groups: Mapping[str, Sequence[str]],
                   where: str) -> dict[str, list[int]]:
    index = {str(name): i for i, name in enumerate(labels)}
    chosen = {}
    for group, names in groups.items():
        missing = [n for n in names if n not in index]
        if missing:
            raise SalglError(f"{where}.{group}: label {missing[0]!r} is not one of the "
                             "model's labels")
        chosen[str(group)] = [index[n] for n in names]
    return chosen


def _grid(count: int) -> tuple[int, int]:
    cols = min(count, 3)
    return (count + cols - 1) // cols, cols


def plot_group_heatmaps(cooccurrence: Any, labels: Sequence[str],
                        groups: Mapping[str, Sequence[str]], out_dir: str | Path,
                        where: str = "plots.label_groups") -> list[Path]:
    """The paper's figure: per label group, P(j | i) in every learned scene side by side."""
    memory = as_cooccurrence(cooccurrence, len(labels))
    probs = conditional_matrix(memory)
    written = []
    for group, idx in _group_indices(labels, groups, where).items():
        rows, cols = _grid(memory.shape[0])
        side = max(3.2, 0.42 * len(idx) + 1.6)
        fig = _figure(cols * side, rows * side)
        names = [str(labels[i]) for i in idx]
        for k in range(memory.shape[0]):
            ax = fig.add_subplot(rows, cols, k + 1)
            block = probs[k][np.ix_(idx, idx)].clip(0, 1)
            ax.imshow(block, vmin=0, vmax=1, cmap="viridis")
            _heatmap_axes(ax, names, "", "")
            if len(idx) <= 10:
                _annotate(ax, np.vectorize(lambda v: f"{v:.2f}")(block), block < 0.5, size=6)
            ax.set_title(f"scene {k} ({_occurrences(memory, k):,.0f} occurrences)",
                         fontsize=9)
        fig.suptitle(f"{group}: P(column label | row label, scene)", fontsize=11)
        written.append(_save(fig, Path(out_dir) / f"group_{safe_label(group)}.png"))
    return written


def plot_scene_top_labels(cooccurrence: Any, labels: Sequence[str], out_png: str | Path,
                          top: int = 10) -> Path:
    """For readers who prefer numbers: each scene's labels with the largest share in it."""
    memory = as_cooccurrence(cooccurrence, len(labels))
    shares = scene_label_shares(memory)
    rows, cols = _grid(memory.shape[0])
    count = min(top, len(labels))
    fig = _figure(cols * 4.2, rows * (0.28 * count + 1.2))
    for k in range(memory.shape[0]):
        ax = fig.add_subplot(rows, cols, k + 1)
        order = np.argsort(-shares[k], kind="stable")[:count][::-1]
        ax.barh(np.arange(len(order)), shares[k][order], color="tab:blue")
        ax.set_yticks(np.arange(len(order)), [str(labels[i]) for i in order], fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_title(f"scene {k}", fontsize=9)
        ax.set_xlabel("share of the label's occurrences", fontsize=8)
    return _save(fig, out_png)


def model_figures(cooccurrence: Any, labels: Sequence[str], out_dir: str | Path,
                  groups: Mapping[str, Sequence[str]] | None = None, top: int = 10,
                  cloud_words: int = 40, where: str = "plots.label_groups") -> list[Path]:
    """Every figure drawn from a model's scene memory alone (works for imported models too)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    memory = as_cooccurrence(cooccurrence, len(labels))
    figures = plot_scene_heatmaps(memory, labels, out)
    figures += plot_scene_clouds(memory, labels, out, cloud_words)
    figures.append(plot_scene_top_labels(memory, labels, out / "scene_top_labels.png", top))
    if groups:
        figures += plot_group_heatmaps(memory, labels, groups, out, where)
    return figures


# --------------------------------------------------------------------------- true scenes


def read_scenes_tsv(scenes_tsv: str | Path) -> list[tuple[str, str, int, str]]:
    """Rows (image_path, split, scene_index, scene_name) of a scenes.tsv; the header is skipped."""
    path = Path(scenes_tsv)
    if not path.is_file():
        raise SalglError(f"{path}: scenes file not found")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if not line.strip() or (number == 1 and fields[0] == "image_path"):
            continue
        if len(fields) < 3:
            raise SalglError(f"{path}:{number}: expected image_path<TAB>split<TAB>scene_index"
                             "<TAB>scene_name")
        try:
            index = int(fields[2])
        except ValueError:
            raise SalglError(f"{path}:{number}: scene index {fields[2]!r} is not an integer"
                             ) from None
        rows.append((fields[0], fields[1], index, fields[3] if len(fields) > 3 else str(index)))
    return rows


def scene_names(rows: Sequence[tuple[str, str, int, str]]) -> list[str]:
    """Scene names by index (0..max); an index that never appears is named by its number."""
    names: dict[int, str] = {index: name for _, _, index, name in rows if index >= 0}
    return [names.get(k, str(k)) for k in range(max(names, default=-1) + 1)]


def _parts(path: str) -> tuple[str, ...]:
    """Normalised path components without the root, for suffix matching."""
    pure = PurePath(os.path.normpath(path.replace("\\", "/")))
    return tuple(p for p in pure.parts if p not in (pure.anchor, ".", ""))


def _resolved(path: str, base: Path) -> str:
    return str((base / path).resolve()) if not os.path.isabs(path) else str(Path(path).resolve())


def _scene_index(rows: Sequence[tuple[str, str, int, str]], tsv_dir: Path
                 ) -> tuple[dict[str, int], dict[tuple[str, ...], int]]:
    """Exact (resolved path) and suffix lookups; a suffix shared by two images is ambiguous."""
    exact: dict[str, int] = {}
    suffix: dict[tuple[str, ...], int] = {}
    owner: dict[tuple[str, ...], int] = {}
    for row, (image, _, index, _) in enumerate(rows):
        for base in (Path.cwd(), tsv_dir):
            exact.setdefault(_resolved(image, base), index)
        parts = _parts(image)
        for k in range(1, len(parts) + 1):
            key = parts[-k:]
            if key in owner and owner[key] != row:
                suffix[key] = _AMBIGUOUS
            else:
                owner[key], suffix[key] = row, index
    return exact, suffix


def _match(path: str, exact: Mapping[str, int], suffix: Mapping[tuple[str, ...], int]) -> int:
    """Scene of one prediction path: exact resolved match, else its longest unique suffix."""
    found = exact.get(_resolved(path, Path.cwd()))
    if found is not None:
        return found
    parts = _parts(path)
    for k in range(len(parts), 0, -1):
        index = suffix.get(parts[-k:])
        if index is not None:
            return -1 if index == _AMBIGUOUS else index
    return -1


def true_scenes_for(paths: Sequence[str], scenes_tsv: str | Path) -> np.ndarray:
    """The true scene index of each prediction path (-1 when scenes.tsv does not know it)."""
    exact, suffix = _scene_index(read_scenes_tsv(scenes_tsv), Path(scenes_tsv).parent)
    return np.array([_match(str(p), exact, suffix) for p in paths], dtype=np.int64)


# --------------------------------------------------------------------------- scene matching


def scene_matching(learned: np.ndarray, true: np.ndarray,
                   true_names: Sequence[str] | None = None,
                   num_learned: int | None = None) -> dict[str, Any]:
    """How well learned scenes recover the true ones: contingency (learned x true), NMI, ARI.

    Images with a negative (unknown) true scene are left out.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    learned, true = np.asarray(learned, dtype=np.int64), np.asarray(true, dtype=np.int64)
    if learned.shape != true.shape or learned.ndim != 1:
        raise SalglError(f"scene_matching: learned {learned.shape} and true {true.shape} differ")
    keep = (true >= 0) & (learned >= 0)
    learned, true = learned[keep], true[keep]
    rows = max(num_learned or 0, int(learned.max(initial=-1)) + 1)
    names = list(true_names) if true_names is not None else []
    cols = max(len(names), int(true.max(initial=-1)) + 1)
    names += [str(k) for k in range(len(names), cols)]
    table = np.zeros((rows, cols), dtype=np.int64)
    np.add.at(table, (learned, true), 1)
    empty = learned.size == 0
    return {
        "num_images": int(learned.size),
        "nmi": None if empty else float(normalized_mutual_info_score(true, learned)),
        "ari": None if empty else float(adjusted_rand_score(true, learned)),
        "purity": None if empty else float(table.max(1).sum() / learned.size),
        "contingency": table.tolist(),
        "true_scene_names": names,
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def plot_scene_matching(match: Mapping[str, Any], out_png: str | Path) -> Path:
    """Row-normalised learned x true contingency with counts, NMI and ARI in the title."""
    table = np.asarray(match["contingency"], dtype=np.float64)
    if table.size == 0 or table.sum() == 0:
        return _blank(out_png, "Learned vs true scenes", "no test image with a known scene")
    share = table / np.maximum(table.sum(1, keepdims=True), 1)
    rows, cols = table.shape
    fig = _figure(min(max(6, 0.8 * cols + 3), 30), min(max(4, 0.5 * rows + 2), 30))
    ax = fig.add_subplot()
    image = ax.imshow(share, vmin=0, vmax=1, cmap="Blues", aspect="auto")
    names = match.get("true_scene_names") or [str(k) for k in range(cols)]
    ax.set_xticks(np.arange(cols), names, rotation=45 if cols > 6 else 0, ha="right"
                  if cols > 6 else "center")
    ax.set_yticks(np.arange(rows), [f"learned {k}" for k in range(rows)])
    ax.set(xlabel="true scene", ylabel="learned scene (argmax)")
    if rows * cols <= 400:
        _annotate(ax, table.astype(np.int64).astype(str), share > 0.5, size=9)
    fig.colorbar(image, ax=ax, label="share of the learned scene's images")
    ax.set_title(f"Learned vs true scenes: NMI {_fmt(match.get('nmi'))}, "
                 f"ARI {_fmt(match.get('ari'))} ({match.get('num_images', int(table.sum()))} "
                 "test images)", fontsize=10)
    return _save(fig, out_png)


# --------------------------------------------------------------------------- everything


def load_predictions_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an evaluate-stage predictions file, never unpickling."""
    path = Path(path)
    if not path.is_file():
        raise SalglError(f"{path}: predictions file not found")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    missing = {"scores", "targets"} - set(arrays)
    if missing:
        raise SalglError(f"{path}: missing keys {sorted(missing)}")
    return arrays


def _labels_of(arrays: Mapping[str, np.ndarray]) -> list[str]:
    num = arrays["scores"].shape[1]
    labels = [str(s) for s in arrays["labels"]] if "labels" in arrays else []
    return labels if len(labels) == num else [f"label_{i}" for i in range(num)]


def per_label_frame(arrays: Mapping[str, np.ndarray], labels: Sequence[str]) -> pd.DataFrame:
    """The per-label AP table computed from predictions, for when no CSV is at hand."""
    import pandas as pd

    from salgl.metrics import average_precision

    targets, ignore = arrays["targets"], arrays.get("ignore")
    valid = np.ones(targets.shape) if ignore is None else 1 - ignore
    positives = (targets * valid).sum(0)
    return pd.DataFrame({"label": list(labels),
                         "ap": average_precision(arrays["scores"], targets, ignore),
                         "positives": positives,
                         "prevalence": positives / np.maximum(valid.sum(0), 1)})


def _remove_stale(out_dir: Path, keep: set[Path]) -> None:
    """Drop per-scene figures of an earlier run with more scenes, so the folder is consistent."""
    for path in out_dir.glob("scene_*.png"):
        if (_SCENE_FILE.fullmatch(path.name) or path.name == "scene_matching.png") \
                and path not in keep:
            path.unlink()


def _scene_match_for(arrays: Mapping[str, np.ndarray], scenes_tsv: str | Path,
                     num_learned: int) -> dict[str, Any]:
    """Learned (argmax) vs true scenes of the test images listed in scenes.tsv."""
    if "scene_probs" not in arrays or "paths" not in arrays:
        raise SalglError("scene matching needs scene_probs and paths in the predictions file")
    true = true_scenes_for([str(p) for p in arrays["paths"]], scenes_tsv)
    if not (true >= 0).any():
        raise SalglError(f"{scenes_tsv}: none of the {true.size} test images is listed")
    learned = arrays["scene_probs"].argmax(1)
    names = scene_names(read_scenes_tsv(scenes_tsv))
    match = scene_matching(learned, true, names, num_learned=num_learned)
    match["num_unmatched"] = int((true < 0).sum())
    return match


def make_all_plots(predictions_npz: str | Path, per_label_csv: str | Path | None,
                   cooccurrence: Any, live_metrics_dir: str | Path | None, out_dir: str | Path,
                   scenes_tsv: str | Path | None = None, pr_labels: int = 10,
                   cloud_words: int = 40, groups: Mapping[str, Sequence[str]] | None = None,
                   top_labels: int = 10, where: str = "plots.label_groups") -> dict[str, Any]:
    """Every figure of the plots stage into ``out_dir``; returns figure names and scene match."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = load_predictions_npz(predictions_npz)
    labels = _labels_of(arrays)
    plot_training_curves(live_metrics_dir, out / "training_curves.png")
    figures = [out / "training_curves.png"]
    per_label = per_label_csv if per_label_csv is not None else per_label_frame(arrays, labels)
    figures.append(plot_per_label_ap(per_label, out / "per_label_ap.png"))
    curves = pr_curves(arrays["scores"], arrays["targets"], labels, arrays.get("ignore"))
    with atomic_dir(out / "pr") as tmp:
        series = [out / "pr" / p.name for p in write_pr_series(curves, tmp)]
    figures.append(plot_pr_curves(curves, out / "pr_curves.png", pr_labels))
    scene_figures: list[Path] = []
    num_learned = arrays["scene_probs"].shape[1] if "scene_probs" in arrays else 0
    if cooccurrence is not None:
        memory = as_cooccurrence(cooccurrence, len(labels))
        num_learned = max(num_learned, memory.shape[0])
        scene_figures += model_figures(memory, labels, out, groups, top_labels, cloud_words,
                                       where)
    match = None
    if scenes_tsv is not None:
        match = _scene_match_for(arrays, scenes_tsv, num_learned)
        scene_figures.append(plot_scene_matching(match, out / "scene_matching.png"))
    _remove_stale(out, set(scene_figures))
    figures += scene_figures
    return {"figures": [p.relative_to(out).as_posix() for p in figures],
            "pr_series": [p.relative_to(out).as_posix() for p in series],
            "scene_match": match}
