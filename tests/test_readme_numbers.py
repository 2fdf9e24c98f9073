"""The README's numbers for the default run are the committed metrics files, as that run
wrote them."""

from __future__ import annotations

import json
import re

from dvc_repo import REPO


def test_default_run_table_quotes_the_committed_metrics() -> None:
    metrics = json.loads((REPO / "metrics/fashion_scenes_all.json").read_text(encoding="utf-8"))
    scenes = json.loads((REPO / "metrics/fashion_scenes_scenes.json").read_text())
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### What the default run gives"):]
    section = section[:section.index("\n## ")]
    row = next(line for line in section.splitlines() if line.startswith("| SALGL, default"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"{metrics['val_mAP']:.3f}"
    assert cells[2] == f"{metrics['mAP']:.3f}"
    assert cells[3] == f"{metrics['CF1']:.3f} / {metrics['OF1']:.3f}"
    assert cells[4] == f"{metrics['CF1_calibrated']:.3f} / {metrics['OF1_calibrated']:.3f}"
    assert f"epoch {metrics['selected_epoch']} selected" in cells[0]
    prior = next(line for line in section.splitlines() if line.startswith("| label-prior"))
    assert f"| {metrics['baseline_label_prior_mAP']:.3f} |" in prior
    assert f"Normalised mutual information is {scenes['scene_nmi']:.3f}" in section
    entropy = re.search(r"scene entropy (\d\.\d{3}) nats", section)
    assert entropy and entropy.group(1) == f"{metrics['scene_entropy']:.3f}"


def test_default_run_prose_quotes_its_training_curve() -> None:
    """"Five epochs do not train this model to convergence": the last epoch's rise, from the
    committed DVCLive curve."""
    rows = (REPO / "dvclive/fashion_scenes/plots/metrics/live/val/mAP.tsv").read_text()
    values = [float(line.split("\t")[1]) for line in rows.splitlines()[1:]]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"rose by {values[-1] - values[-2]:.3f} in the last one" in readme


def test_pretrained_demo_table_quotes_its_committed_metrics() -> None:
    """The "Start from what exists" table: both rows from their committed metrics files."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Start from what exists"):]
    section = section[:section.index("\n## ")]
    for name, path in (("default run", "metrics/fashion_scenes_all.json"),
                       ("pretrained demo", "metrics/pretrained/fashion_scenes_all.json")):
        metrics = json.loads((REPO / path).read_text(encoding="utf-8"))
        row = next(line for line in section.splitlines() if line.startswith(f"| {name}"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[-3:] == [f"{metrics['val_mAP']:.3f}", f"{metrics['mAP']:.3f}",
                              f"{metrics['CF1']:.3f} / {metrics['OF1']:.3f}"], row
