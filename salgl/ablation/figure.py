"""The ablation figure: test mAP per variant, one mark per seed, one panel per dataset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from salgl.figures.common import FONT, FONT_LABEL, FONT_SMALL, FONT_TITLE, new_figure, save

DATA_TITLES = {"scenes": "scene data (labels depend on the scene)",
               "control": "control (scene_purity 0: labels independent of the scene)"}
SEED_MARKERS = "os^Dv<>p"


def ablation_figure(runs: Sequence[dict[str, Any]], data: Sequence[str], out: str | Path,
                    titles: Mapping[str, str] | None = None) -> Path:
    """Panels side by side, sharing the mAP axis so the datasets compare at a glance; a
    short bar marks each variant's mean over seeds."""
    fig = new_figure(4.2 * len(data) + 0.6, 4.2, layout="constrained")
    axes = fig.subplots(1, len(data), sharey=True, squeeze=False)[0]
    seeds = sorted({r["seed"] for r in runs})
    for ax, name in zip(axes, data, strict=True):
        mine = [r for r in runs if r["data"] == name]
        variants = list(dict.fromkeys(r["variant"] for r in mine))
        for x, variant in enumerate(variants):
            group = [r for r in mine if r["variant"] == variant]
            for r in group:
                k = seeds.index(r["seed"])
                offset = (k - (len(seeds) - 1) / 2) * 0.12
                ax.plot(x + offset, r["mAP"], SEED_MARKERS[k % len(SEED_MARKERS)],
                        color=f"C{k}", markersize=6, label=f"seed {r['seed']}" if x == 0 else None)
            mean = sum(r["mAP"] for r in group) / len(group)
            ax.hlines(mean, x - 0.3, x + 0.3, color="0.2", linewidth=2)
        names = [f"{v}\n{(titles or {}).get(v, '')}".strip() for v in variants]
        ax.set_xticks(range(len(variants)), names, fontsize=FONT_SMALL)
        ax.set_xlim(-0.6, len(variants) - 0.4)
        ax.set_xlabel("variant (docs/results.md)", fontsize=FONT_LABEL)
        ax.set_title(DATA_TITLES.get(name, name), fontsize=FONT_LABEL)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(labelsize=FONT)
    axes[0].set_ylabel("test mAP", fontsize=FONT_LABEL)
    axes[0].legend(fontsize=FONT_SMALL, loc="lower left", title="bar = mean",
                   title_fontsize=FONT_SMALL)
    fig.suptitle("Scene awareness ablation: test mAP per run", fontsize=FONT_TITLE)
    return save(fig, out)
