"""The ablation's figures: test mAP per run with the paired differences beside them, and each
run's validation mAP per epoch (the convergence check)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from salgl.figures.common import FONT, FONT_LABEL, FONT_SMALL, FONT_TITLE, new_figure, save

DATA_TITLES = {"positive": "positive control (scenes pair the labels)",
               "control": "control (scene_purity 0)"}
SEED_MARKERS = "os^Dv<>p"


def _seed_offset(k: int, count: int) -> float:
    return (k - (count - 1) / 2) * 0.1


def ablation_figure(runs: Sequence[dict[str, Any]], differences: Sequence[dict[str, Any]],
                    data: Sequence[str], out: str | Path,
                    titles: Mapping[str, str] | None = None) -> Path:
    """One panel per data (test mAP, one mark per seed, hollow where the run is void; a bar
    at the mean of the converged runs) sharing the mAP axis, then the paired differences."""
    fig = new_figure(4.0 * len(data) + 5.0, 4.4, layout="constrained")
    axes = fig.subplots(1, len(data) + 1, squeeze=False,
                        width_ratios=[1.0] * len(data) + [1.25])[0]
    seeds = sorted({r["seed"] for r in runs})
    for ax, name in zip(axes, data, strict=False):
        mine = [r for r in runs if r["data"] == name]
        variants = list(dict.fromkeys(r["variant"] for r in mine))
        for x, variant in enumerate(variants):
            group = [r for r in mine if r["variant"] == variant]
            for r in group:
                k = seeds.index(r["seed"])
                ax.plot(x + _seed_offset(k, len(seeds)), r["mAP"],
                        SEED_MARKERS[k % len(SEED_MARKERS)], color=f"C{k}", markersize=6,
                        fillstyle="none" if r["void"] else "full",
                        label=f"seed {r['seed']}" if x == 0 else None)
            kept = [r["mAP"] for r in group if not r["void"]]
            if kept:
                ax.hlines(sum(kept) / len(kept), x - 0.3, x + 0.3, color="0.2", linewidth=2)
        names = [f"{v}\n{(titles or {}).get(v, '')}".strip() for v in variants]
        ax.set_xticks(range(len(variants)), names, fontsize=FONT_SMALL)
        ax.set_xlim(-0.6, len(variants) - 0.4)
        ax.set_title(DATA_TITLES.get(name, name), fontsize=FONT_LABEL)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(labelsize=FONT)
    values = [r["mAP"] for r in runs]
    pad = 0.05 * (max(values) - min(values) or 0.01)
    for ax in axes[:len(data)]:  # one mAP scale, so the data compare at a glance
        ax.set_ylim(min(values) - pad, max(values) + pad)
    axes[0].set_ylabel("test mAP", fontsize=FONT_LABEL)
    axes[len(data) - 1].legend(fontsize=FONT_SMALL, loc="upper right",
                               title="bar = mean of converged runs; hollow = void",
                               title_fontsize=FONT_SMALL)
    _differences_panel(axes[-1], differences, data)
    fig.suptitle("Scene awareness ablation, second edition: test mAP per run and paired "
                 "differences", fontsize=FONT_TITLE)
    return save(fig, out)


def _differences_panel(ax, differences: Sequence[dict[str, Any]], data: Sequence[str]) -> None:
    """Per comparison, Δ on each data and the DiD over the converged seeds: seeds as dots, the
    mean as a bar, the bootstrap interval over test images as a line; a hollow diamond marks
    the mean over every seed, void runs included (outside the rule)."""
    series = [*data, "DiD"]
    comparisons = list(dict.fromkeys(r["comparison"] for r in differences))
    width = 0.8 / len(series)
    for j, name in enumerate(series):
        mine = [r for r in differences if r["data"] == name]
        rows = {r["comparison"]: r for r in mine if r["runs"] == "converged"}  # the rule's
        every = {r["comparison"]: r for r in mine if r["runs"] != "converged"}
        for i, comparison in enumerate(comparisons):
            x = i + (j - (len(series) - 1) / 2) * width
            if comparison in every:
                ax.plot(x, every[comparison]["mean"], "D", fillstyle="none", color=f"C{j}",
                        markersize=7, label="mean, void runs included" if (i, j) == (0, 0)
                        else None)
            row = rows.get(comparison)
            if row is None:
                continue
            values = [v for k, v in row.items() if k.startswith("seed_")]
            ax.plot([x] * len(values), values, ".", color=f"C{j}", alpha=0.6, markersize=5)
            ax.hlines(row["mean"], x - width / 3, x + width / 3, color=f"C{j}", linewidth=2.5)
            ax.vlines(x, row["bootstrap_low"], row["bootstrap_high"], color=f"C{j}",
                      linewidth=1)
    for j, name in enumerate(series):
        ax.plot([], [], "s", color=f"C{j}", label=f"Δ on {name}" if name != "DiD" else
                "DiD (scene data minus control)")
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(range(len(comparisons)), comparisons, fontsize=FONT_SMALL)
    ax.set_ylabel("test mAP difference", fontsize=FONT_LABEL)
    ax.set_title("paired differences over converged seeds (line: 95% bootstrap over test "
                 "images)", fontsize=FONT_SMALL)
    ax.grid(axis="y", alpha=0.3)
    ax.tick_params(labelsize=FONT)
    ax.legend(fontsize=FONT_SMALL, loc="best")


def convergence_figure(runs: Sequence[dict[str, Any]], data: Sequence[str],
                       variants: Sequence[str], out: str | Path, max_rise: float,
                       titles: Mapping[str, str] | None = None) -> Path:
    """Validation mAP per epoch, one line per seed, a panel per data and variant; dashed
    where the run is void (it rose by ``max_rise`` or more over its last two epochs)."""
    fig = new_figure(3.0 * len(variants) + 0.6, 2.6 * len(data) + 0.6, layout="constrained")
    axes = fig.subplots(len(data), len(variants), sharex=True, sharey=True, squeeze=False)
    seeds = sorted({r["seed"] for r in runs})
    for row, name in zip(axes, data, strict=True):
        for ax, variant in zip(row, variants, strict=True):
            for r in runs:
                if r["data"] == name and r["variant"] == variant:
                    history = r["val_mAP_per_epoch"]
                    k = seeds.index(r["seed"])
                    ax.plot(range(1, len(history) + 1), history, "--" if r["void"] else "-",
                            color=f"C{k}", linewidth=1.2, label=f"seed {r['seed']}")
            ax.set_title(f"{DATA_TITLES.get(name, name).split(' (')[0]}: {variant} "
                         f"{(titles or {}).get(variant, '')}".strip(), fontsize=FONT_SMALL)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=FONT_SMALL)
    from matplotlib.ticker import MaxNLocator

    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=FONT)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[:, 0]:
        ax.set_ylabel("validation mAP", fontsize=FONT)
    axes[0, 0].legend(fontsize=FONT_SMALL, loc="lower right")
    fig.suptitle(f"Convergence: a run is void (dashed) if its validation mAP rose by "
                 f"{max_rise} or more over its last two epochs", fontsize=FONT_LABEL)
    return save(fig, out)
