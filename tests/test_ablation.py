"""The scene-awareness ablation: its params file, its reading rule, and a one-epoch,
tiny-data run of its real pipeline through `dvc repro`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from dvc_repo import REPO, copy_repository, run
from fakes import TINY_TRAIN, make_source
from stage_deps import covered, imported_by_stage, probe_env, undeclared, undeclared_static


def tiny_ablation(source: Path) -> dict:
    """The committed params file with tiny sizes, one seed, one epoch and one scene count."""
    params = yaml.safe_load((REPO / "experiments/ablation/params.yaml").read_text())
    params.update(seeds=[0], scene_counts=["e2"], fashion_mnist=str(source))
    params["prepare"].update(image_size=32, train_images=48, test_images=24)
    params["embed"].update(dim=8, epochs=30)
    params["train"].update(TINY_TRAIN, epochs=1, batch_size=16)
    return params


@pytest.mark.slow
def test_ablation_pipeline_runs_through_dvc_repro(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repository(repo, ablation=True)
    params = tiny_ablation(make_source(tmp_path / "fmnist", n_train=60, n_test=30))
    (repo / "experiments/ablation/params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny ablation"], repo)

    probe = tmp_path / "stage_probe.jsonl"
    first = run(["dvc", "repro", "experiments/ablation/dvc.yaml"], repo, env=probe_env(probe))
    cells = [f"{d}-{v}-0" for d in ("scenes", "control") for v in ("a", "b", "c", "d")]
    cells.append("scenes-e2-0")
    for cell in cells:
        assert f"run@{cell}'" in first.stdout or f"run-scene-counts@{cell}'" in first.stdout
    assert "Running stage" not in run(["dvc", "repro", "experiments/ablation/dvc.yaml"],
                                      repo).stdout

    # every run's metrics, listed from the repository root
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    listed = {Path(path).stem for rev in shown.values() for path in rev["data"]}
    assert set(cells) <= listed
    scene_run = json.loads((repo / "metrics/ablation/scenes-a-0.json").read_text())
    assert set(scene_run) >= {"mAP", "CF1", "OF1", "val_mAP", "scene_nmi"}
    assert scene_run["scene_nmi"] is not None
    for plain in ("scenes-d-0", "scenes-b-0"):  # no learned scenes to compare
        assert json.loads((repo / f"metrics/ablation/{plain}.json").read_text())[
            "scene_nmi"] is None

    with open(repo / "results/ablation.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["data"], r["variant"]) for r in table] == [
        *[(d, v) for d in ("scenes", "control") for v in "abcd"], ("scenes", "e2")]
    assert all(float(r["seconds_per_epoch"]) > 0 and r["mAP_mean"] for r in table)
    with open(repo / "results/ablation_differences.csv", newline="") as f:
        diffs = list(csv.DictReader(f))
    assert [(r["data"], r["comparison"]) for r in diffs] == [
        ("scenes", "a-b"), ("scenes", "a-d"), ("control", "a-b"), ("control", "a-d")]
    by_variant = {(r["data"], r["variant"]): float(r["mAP_mean"]) for r in table}
    assert float(diffs[1]["seed_0"]) == pytest.approx(
        by_variant["scenes", "a"] - by_variant["scenes", "d"], abs=2e-4)
    assert (repo / "results/ablation.png").stat().st_size > 10_000

    # every file of ours a stage imported or read is one of its dependencies, and the real
    # `dvc status` sees a change to any of them; a figure of the default pipeline reruns
    # no run of the ablation, its own figure only the summary
    assert undeclared(repo, probe) == {}
    assert undeclared_static(repo, probe) == {}
    imported = imported_by_stage(repo, probe)
    assert len(imported) == 2 * 2 + len(cells) + 1
    for figure in ("salgl/figures/heatmaps.py", "salgl/figures/stage.py"):
        assert not any(figure in files for files in imported.values())
    status = ["dvc", "status", "--json", "experiments/ablation/dvc.yaml"]
    every = sorted(set().union(*imported.values()))
    touch(repo, every)
    stale = json.loads(run(status, repo).stdout or "{}")
    for stage, files in imported.items():
        changed = [repo / dep for entry in stale.get(stage, [])
                   for dep in entry.get("changed deps", {})]
        for name in files:
            assert covered(repo / name, changed), f"{stage}: dvc status misses {name}"
    restore(repo)
    touch(repo, ["salgl/ablation/figure.py"])
    stale = json.loads(run(status, repo).stdout)
    assert set(stale) == {"experiments/ablation/dvc.yaml:summary"}
    restore(repo)
    assert json.loads(run(status, repo).stdout or "{}") == {}

    # one cell again, forced: the same metrics, byte for byte
    before = (repo / "metrics/ablation/control-d-0.json").read_bytes()
    run(["dvc", "repro", "-f", "-s", "experiments/ablation/dvc.yaml:run@control-d-0"], repo)
    assert (repo / "metrics/ablation/control-d-0.json").read_bytes() == before


def touch(repo: Path, names: list[str]) -> None:
    """Append a comment line to each file (``restore`` takes them back)."""
    for name in names:
        with open(repo / name, "a", encoding="utf-8") as f:
            f.write("# touched\n")


def restore(repo: Path) -> None:
    run(["git", "checkout", "--", "salgl"], repo)


def test_ablation_params_errors_name_the_file_and_key(tmp_path: Path, salgl_main) -> None:
    params = tiny_ablation(tmp_path / "fmnist")
    cases = [({"variants": ["a", "z"]}, "variants: 'z' has no entry in variant_settings"),
             ({"seeds": [0, -1]}, "seeds: expected whole numbers"),
             ({"data": []}, "data: expected a non-empty list"),
             ({"variant_settings": {**params["variant_settings"], "b": {"num_scenes": 0}}},
              "variant_settings.b over train.num_scenes: must be at least 1")]
    for change, message in cases:
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump({**params, **change}))
        code, _, err = salgl_main("ablation", "--params", str(path), "run", "scenes", "b", "0")
        assert code == 2, err
        assert f"{path}: {message}" in err, err
        assert not (tmp_path / "models").exists()


def test_reading_rule_counts_only_differences_beyond_the_seed_spread() -> None:
    from salgl.ablation.design import load_ablation
    from salgl.ablation.summary import difference_rows

    ablation = load_ablation(REPO / "experiments/ablation/params.yaml")
    a = [0.70, 0.72, 0.71]
    runs = [{"data": "scenes", "variant": "a", "seed": s, "mAP": m} for s, m in enumerate(a)]
    runs += [{"data": "scenes", "variant": "b", "seed": s, "mAP": m - 0.01}  # inside spread
             for s, m in enumerate(a)]
    runs += [{"data": "scenes", "variant": "d", "seed": s, "mAP": m - 0.05}  # beyond it
             for s, m in enumerate(a)]
    rows = {r["comparison"]: r for r in difference_rows(ablation, runs)}
    assert rows["a-b"]["mean"] == pytest.approx(0.01)
    assert rows["a-b"]["largest_variant_spread"] == pytest.approx(0.02)
    assert rows["a-b"]["reading"] == "no measurable difference"
    assert rows["a-d"]["reading"] == "a better"
    assert [rows["a-d"][f"seed_{s}"] for s in range(3)] == pytest.approx([0.05] * 3)


def test_readme_headline_numbers_are_the_committed_table() -> None:
    """The README's ablation table quotes results/ablation.csv as that run wrote it."""
    with open(REPO / "results/ablation.csv", newline="") as f:
        table = {(r["data"], r["variant"]): r for r in csv.DictReader(f)}
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Is scene awareness worth it?"):]
    section = section[:section.index("\n## ")]
    rows = [line for line in section.splitlines() if line.startswith("| (")]
    assert [line[3] for line in rows] == ["a", "b", "d"]
    for line in rows:
        variant = line[3]
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        for data, cell in zip(("scenes", "control"), cells, strict=True):
            row = table[data, variant]
            assert cell == f"{float(row['mAP_mean']):.3f} ± {float(row['mAP_std']):.3f}"

    # the prose under the table: the reading, the paired lead, the cost and the NMI
    with open(REPO / "results/ablation_differences.csv", newline="") as f:
        diffs = {(r["data"], r["comparison"]): r for r in csv.DictReader(f)}
    assert all(diffs[d, c]["reading"] == "no measurable difference"
               for d in ("scenes", "control") for c in ("a-b", "a-d"))
    lead = diffs["scenes", "a-d"]
    assert all(float(lead[f"seed_{s}"]) < 0 for s in range(3))
    assert f"by about {-float(lead['mean']):.3f}" in section
    plain, salgl = (float(table["scenes", v]["seconds_per_epoch"]) for v in ("d", "a"))
    assert f"({plain:.1f} s against {salgl:.1f} s)" in section
    assert f"{round(100 * (1 - plain / salgl))}% less time per epoch" in section
    nmi = [float(table[d, "a"]["scene_nmi_mean"]) for d in ("scenes", "control")]
    assert f"NMI {nmi[0]:.2f}, against {nmi[1]:.2f} on the control" in section
