"""One word cloud per learned scene: labels sized and coloured by the share of their
occurrences that fell in the scene.

Colour repeats the size on a dark sequential scale with a colourbar, so each word's share can
be read off and every word stays legible on white. The scale is shared by all scenes' clouds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from salgl.figures.common import (
    FONT_LABEL,
    FONT_SMALL,
    FONT_TITLE,
    blank,
    memory_counts,
    new_figure,
    nice_max,
    save,
)
from salgl.figures.memory import as_cooccurrence, occurrences, scene_label_shares

if TYPE_CHECKING:
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure

CLOUD_SEED = 0
CLOUD_CMAP = "viridis"
CLOUD_CMAP_RANGE = (0.0, 0.55)  # dark purple to teal: contrast with white at least 3.4:1
MEANING = "share of the label's occurrences that fell in this scene"


def cloud_colormap() -> Colormap:
    """The dark part of viridis, so even the palest word contrasts with white."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    low, high = CLOUD_CMAP_RANGE
    return ListedColormap(colormaps[CLOUD_CMAP](np.linspace(low, high, 256)), name="cloud")


def _cloud_image(weights: Mapping[str, float], max_words: int, cmap: Colormap,
                 norm: Normalize) -> np.ndarray:
    """A word cloud with the bundled font and a fixed seed, so reruns give the same picture."""
    from matplotlib.colors import to_hex
    from wordcloud import WordCloud

    def colour(word: str, **_: Any) -> str:
        return to_hex(cmap(norm(weights[word[1:-1]])))

    # A space either side of each word keeps neighbours apart in proportion to their size.
    padded = {f" {word} ": share for word, share in weights.items()}
    cloud = WordCloud(width=800, height=450, background_color="white", max_words=max_words,
                      random_state=CLOUD_SEED, prefer_horizontal=1.0, color_func=colour,
                      relative_scaling=0.6, min_font_size=10, max_font_size=110, margin=12)
    return cloud.generate_from_frequencies(padded).to_array()


def cloud_figure(weights: Mapping[str, float], title: str, max_words: int,
                 vmax: float, scenes: int) -> Figure:
    """The cloud of one scene with a colourbar saying what colour (and size) means."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cmap, norm = cloud_colormap(), Normalize(0, vmax)
    fig = new_figure(9, 5.2)
    ax = fig.add_subplot()
    ax.imshow(_cloud_image(weights, max(1, max_words), cmap, norm), interpolation="bilinear")
    ax.set_axis_off()
    ax.set_title(title, fontsize=FONT_TITLE)
    bar = fig.colorbar(ScalarMappable(norm, cmap), ax=ax, fraction=0.035, pad=0.02)
    uniform = 1 / max(scenes, 1)
    bar.ax.axhline(uniform, color="tab:red", lw=2)
    bar.set_label(f"{MEANING}\n(red: 1/K = {uniform:.2f}, the share if scenes did not matter)",
                  fontsize=FONT_LABEL)
    bar.ax.tick_params(labelsize=FONT_SMALL + 1)
    return fig


def plot_scene_clouds(cooccurrence: Any, labels: Sequence[str], out_dir: str | Path,
                      max_words: int = 40) -> list[Path]:
    """One word cloud per scene, each label sized and coloured by its share in the scene."""
    memory = as_cooccurrence(cooccurrence, len(labels))
    shares = scene_label_shares(memory)
    vmax = nice_max(float(shares.max(initial=0.0)), 0.1) if shares.size else 1.0
    out_dir = Path(out_dir)
    written = []
    for k in range(memory.shape[0]):
        path = out_dir / f"scene_{k}_cloud.png"
        weights = {str(labels[i]): float(w) for i, w in enumerate(shares[k]) if w > 0}
        if not weights:
            written.append(blank(path, f"Scene {k}", "no labels in this scene"))
            continue
        title = (f"Scene {k}: word size and colour = {MEANING}\n"
                 f"({memory_counts(occurrences(memory, k))})")
        written.append(save(cloud_figure(weights, title, max_words, vmax, memory.shape[0]), path))
    return written
