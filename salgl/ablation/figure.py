"""The ablation's figures: test mAP per run with the paired differences and each comparison's
verdict under them, and each run's validation mAP per epoch (the convergence check)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from salgl.ablation.reading import DOES_NOT_HELP, HELPS, ReadingRule
from salgl.errors import SalglError
from salgl.figures.common import FONT, FONT_LABEL, FONT_SMALL, FONT_TITLE, new_figure, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CONVERGED = "converged"  # the runs column of the rule's rows (salgl.ablation.summary)

DATA_TITLES = {"positive": "positive control (scenes pair the labels)",
               "control": "control (scene_purity 0)"}
SEED_MARKERS = "os^Dv<>p"


def _seed_offset(k: int, count: int) -> float:
    return (k - (count - 1) / 2) * 0.1


def read_rows(path: str | Path, required: Sequence[str] = ()) -> list[dict[str, Any]]:
    """A CSV the summary wrote (ablation_differences.csv, ablation_verdicts.csv) as the rows
    it wrote: empty cells None, numbers floats, so a figure can be redrawn from the files."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = [{k: _value(v) for k, v in row.items()} for row in reader]
            columns = reader.fieldnames or []
    except FileNotFoundError:
        raise SalglError(f"{path}: missing (run the ablation summary first)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SalglError(f"{path}: not readable as CSV ({exc})") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise SalglError(f"{path}: missing columns {', '.join(missing)}")
    return rows


def _value(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def ablation_figure(runs: Sequence[dict[str, Any]], differences: Sequence[dict[str, Any]],
                    data: Sequence[str], out: str | Path,
                    titles: Mapping[str, str] | None = None,
                    verdicts: Sequence[dict[str, Any]] | None = None,
                    rule: ReadingRule | None = None) -> Path:
    """`ablation_result_figure` saved to ``out``."""
    return save(ablation_result_figure(runs, differences, data, titles, verdicts, rule), out)


def ablation_result_figure(runs: Sequence[dict[str, Any]],
                           differences: Sequence[dict[str, Any]], data: Sequence[str],
                           titles: Mapping[str, str] | None = None,
                           verdicts: Sequence[dict[str, Any]] | None = None,
                           rule: ReadingRule | None = None) -> Figure:
    """Top: one panel per data (test mAP, one mark per seed, hollow where the run is void; a
    bar at the mean of the converged runs) sharing the mAP axis. Below, across: the paired
    differences the reading rests on, each comparison with its verdict (``verdicts``: the
    rows of ablation_verdicts.csv; ``rule`` adds its confidence and min_difference)."""
    comparisons = list(dict.fromkeys(r["comparison"] for r in differences))
    rows_height = 0.3 * len(comparisons) * (len(data) + 1 + ROW_GAP) + 1.2
    fig = new_figure(max(10.0, 4.2 * len(data) + 1.5), 4.4 + rows_height, layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.4, rows_height])
    axes = top.subplots(1, len(data), squeeze=False)[0]
    _runs_panels(axes, runs, data, titles)
    _differences_panel(bottom.subplots(), differences, data, titles, verdicts, rule)
    verdict = " with the verdict of the reading rule" if verdicts else ""
    fig.suptitle("Scene awareness ablation, second edition: test mAP per run, and the paired "
                 f"differences{verdict}", fontsize=FONT_TITLE)
    return fig


def _runs_panels(axes, runs: Sequence[dict[str, Any]], data: Sequence[str],
                 titles: Mapping[str, str] | None) -> None:
    """Test mAP of every run, a panel per data, on one mAP scale."""
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


VERDICT_COLOURS = {HELPS: "tab:green", DOES_NOT_HELP: "tab:red"}  # others grey
ROW_GAP = 2  # rows per comparison above its series: its verdict line and a blank


def comparison_heading(comparison: str, verdict_row: Mapping[str, Any] | None,
                       titles: Mapping[str, str] | None = None) -> str:
    """'a-d (SALGL − plain): does not help, 3 converged seeds (2 with a void run left out)':
    what is compared, the verdict and how many seeds it rests on."""
    first, _, second = comparison.partition("-")
    names = titles or {}
    text = comparison
    if first in names and second in names:
        text += f" ({names[first]} − {names[second]})"
    if verdict_row is None:
        return text
    seeds = int(verdict_row.get("seeds") or 0)
    void = int(verdict_row.get("void_seeds") or 0)
    text += f": {verdict_row['verdict']}"
    if seeds:
        text += f", {seeds} converged seed{'s' if seeds != 1 else ''}"
        text += f" ({void} with a void run left out)" if void else ""
    return text


def _series_label(name: str, rule: ReadingRule | None) -> str:
    """A row's name; the DiD says which data it subtracts when the rule is known."""
    if name != "DiD":
        return f"Δ on {name}"
    return f"DiD ({rule.scene_data} − {rule.control})" if rule is not None else "DiD"


def _differences_panel(ax, differences: Sequence[dict[str, Any]], data: Sequence[str],
                       titles: Mapping[str, str] | None = None,
                       verdicts: Sequence[dict[str, Any]] | None = None,
                       rule: ReadingRule | None = None) -> None:
    """Per comparison, its verdict, then a row per data and the DiD: the mean over converged
    seeds (filled dot) with its Student t bounds (thick) and the bootstrap interval over test
    images (thin, capped), the seeds as small dots, and a hollow diamond at the mean over
    every seed, void runs included (outside the rule); zero solid, the rule's min_difference
    dotted, both over the rows only."""
    series = [*data, "DiD"]
    comparisons = list(dict.fromkeys(r["comparison"] for r in differences))
    by_verdict = {v["comparison"]: v for v in verdicts or []}
    ticks, tick_labels = [], []
    for i, comparison in enumerate(comparisons):
        y0 = i * (len(series) + ROW_GAP)
        verdict_row = by_verdict.get(comparison)
        colour = VERDICT_COLOURS.get((verdict_row or {}).get("verdict"), "0.25")
        ax.text(0.005, y0, comparison_heading(comparison, verdict_row, titles), color=colour,
                transform=ax.get_yaxis_transform(), ha="left", va="center",
                fontsize=FONT_LABEL, fontweight="bold", gid=f"verdict {comparison}")
        rows_y = y0 + 1 + np.arange(len(series))
        ax.vlines(0, rows_y[0] - 0.5, rows_y[-1] + 0.5, color="0.3", linewidth=0.9,
                  gid="zero")  # over the rows only: the heading above stays clear
        if rule is not None:
            ax.vlines(rule.min_difference, rows_y[0] - 0.5, rows_y[-1] + 0.5, color="0.3",
                      linewidth=0.9, linestyles=":", gid="min_difference")
        for j, name in enumerate(series):
            _difference_row(ax, rows_y[j], differences, comparison, name, f"C{j}")
            ticks.append(rows_y[j])
            tick_labels.append(_series_label(name, rule))
    ax.set_yticks(ticks, tick_labels, fontsize=FONT)
    ax.set_ylim(len(comparisons) * (len(series) + ROW_GAP) - 1.5, -0.7)
    ax.set_xlabel("test mAP difference (first variant minus second)", fontsize=FONT_LABEL)
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(axis="x", labelsize=FONT)
    ax.set_title("Paired differences over the converged seeds" + (
        ", and the verdict" if verdicts else ""), fontsize=FONT_LABEL)
    _differences_legend(ax, rule)


def _difference_row(ax, y: float, differences: Sequence[dict[str, Any]], comparison: str,
                    name: str, colour: str) -> None:
    """One comparison's difference on one data (or the DiD)."""
    mine = [r for r in differences if r["comparison"] == comparison and r["data"] == name]
    rule_row = next((r for r in mine if r["runs"] == CONVERGED), None)
    every = next((r for r in mine if r["runs"] != CONVERGED), None)
    gid = f"{comparison} {name}"
    if every is not None:
        ax.plot(every["mean"], y, "D", fillstyle="none", color=colour, markersize=7,
                gid=f"with void {gid}")
    if rule_row is None:
        return
    values = [v for k, v in rule_row.items() if k.startswith("seed_") and v is not None]
    ax.plot(values, [y] * len(values), ".", color=colour, alpha=0.55, markersize=5,
            gid=f"seeds {gid}")
    if rule_row.get("t_lower") is not None and rule_row.get("t_upper") is not None:
        ax.hlines(y, rule_row["t_lower"], rule_row["t_upper"], color=colour, linewidth=4,
                  alpha=0.45, gid=f"t bounds {gid}")
    if rule_row.get("bootstrap_low") is not None:
        low, high = rule_row["bootstrap_low"], rule_row["bootstrap_high"]
        bars = ax.errorbar((low + high) / 2, y + 0.3, xerr=(high - low) / 2, color=colour,
                           linewidth=1, capsize=3, fmt="none")
        bars.lines[2][0].set_gid(f"bootstrap {gid}")
    ax.plot(rule_row["mean"], y, "o", color=colour, markersize=6, gid=f"mean {gid}")


def _differences_legend(ax, rule: ReadingRule | None) -> None:
    """What each mark is, under the panel."""
    from matplotlib.lines import Line2D

    grey = "0.35"
    level = f"one-sided {rule.confidence:.0%} each" if rule is not None else "one-sided"
    two_sided = f"{rule.confidence:.0%} " if rule is not None else ""
    handles = [
        Line2D([], [], marker="o", ls="none", color=grey, label="mean over converged seeds"),
        Line2D([], [], lw=4, alpha=0.45, color=grey, label=f"Student t bounds ({level})"),
        Line2D([], [], marker="|", markersize=8, lw=1, color=grey,
               label=f"{two_sided}bootstrap interval over test images"),
        Line2D([], [], marker=".", ls="none", color=grey, label="one seed"),
        Line2D([], [], marker="D", ls="none", fillstyle="none", color=grey,
               label="mean with void runs (outside the rule)"),
        Line2D([], [], color="0.3", lw=0.9, label="zero"),
    ]
    if rule is not None:
        handles.append(Line2D([], [], color="0.3", lw=0.9, ls=":",
                              label=f"min_difference {rule.min_difference:g}"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=(len(handles) + 1) // 2, fontsize=FONT_SMALL, frameon=False)


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
