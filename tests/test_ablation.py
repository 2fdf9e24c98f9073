"""The scene-awareness ablation (second edition): its params file, its reading rule, the
paired bootstrap, and a three-epoch, tiny-data run of its real pipeline through `dvc repro`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from salgl.runtime import cpu_cores

from dvc_repo import REPO, copy_repository, run
from fakes import TINY_TRAIN, make_source
from stage_deps import covered, imported_by_stage, probe_env, undeclared, undeclared_static


def tiny_ablation(source: Path) -> dict:
    """The committed params file with tiny sizes, one seed and three epochs; every run counts
    as converged (tiny runs jump about) and the bootstrap is short."""
    params = yaml.safe_load((REPO / "experiments/ablation/params.yaml").read_text())
    params.update(seeds=[0], fashion_mnist=str(source))
    params["prepare"].update(image_size=32, train_images=48, test_images=24)
    params["embed"].update(dim=8, epochs=30)
    params["train"].update(TINY_TRAIN, epochs=3, patience=3, batch_size=16)
    params["reading"].update(max_rise=1.0, bootstrap_samples=50)
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
    assert "run@0'" in first.stdout
    cells = [f"{d}-{v}-0" for d in ("positive", "control") for v in ("a", "b", "d", "s")]
    assert "Running stage" not in run(["dvc", "repro", "experiments/ablation/dvc.yaml"],
                                      repo).stdout

    # every run's metrics in the seed's file, an output rather than a DVC metric, so the
    # root's `dvc metrics show` stays the default run's (docs/method-notes.md)
    assert "ablation" not in run(["dvc", "metrics", "show", "--json"], repo).stdout
    group = json.loads((repo / "metrics/ablation/seed-0.json").read_text())
    assert set(group) == {c[:-2] for c in cells}
    scene_run = group["positive-a"]
    assert set(scene_run) >= {"mAP", "CF1", "OF1", "val_mAP", "scene_nmi", "val_mAP_per_epoch"}
    assert scene_run["scene_nmi"] is not None and len(scene_run["val_mAP_per_epoch"]) == 3
    assert scene_run["val_rise_last_two"] == pytest.approx(
        scene_run["val_mAP_per_epoch"][2] - scene_run["val_mAP_per_epoch"][0])
    for plain in ("positive-b", "positive-d"):  # no learned scenes to compare
        assert group[plain]["scene_nmi"] is None
    # two lanes of one thread each on the 2-core CI machine
    cost = json.loads((repo / "results/ablation/cost/seed-0.json").read_text())
    assert {c["threads"] for c in cost.values()} == {max(1, cpu_cores() // 2)}
    # the per-image test scores reproduce the cell's test mAP
    from salgl.metrics import average_precision, mean_ap
    from salgl.predictions import Predictions

    kept = Predictions.load(repo / "results/ablation/scores/seed-0/positive-a.npz")
    assert len(kept.paths) == 24
    assert mean_ap(average_precision(kept.scores, kept.targets)) == pytest.approx(
        scene_run["mAP"])

    tables = {name: read_csv(repo / f"results/ablation{name}.csv")
              for name in ("", "_differences", "_verdicts", "_convergence")}
    assert [(r["data"], r["variant"]) for r in tables[""]] == [
        (d, v) for d in ("positive", "control") for v in "abds"]
    assert all(float(r["seconds_per_epoch"]) > 0 and r["mAP_mean"] for r in tables[""])
    assert [r["cell"] for r in tables["_convergence"]] == cells
    assert {r["status"] for r in tables["_convergence"]} == {"converged"}
    diffs = {(r["comparison"], r["data"]): r for r in tables["_differences"]}
    assert list(diffs) == [(c, d) for c in ("a-b", "a-d", "s-b")
                           for d in ("positive", "control", "DiD")]
    by_variant = {(r["data"], r["variant"]): float(r["mAP_mean"]) for r in tables[""]}
    assert float(diffs["a-d", "positive"]["seed_0"]) == pytest.approx(
        by_variant["positive", "a"] - by_variant["positive", "d"], abs=2e-4)
    assert float(diffs["a-d", "DiD"]["mean"]) == pytest.approx(
        float(diffs["a-d", "positive"]["mean"]) - float(diffs["a-d", "control"]["mean"]),
        abs=2e-4)
    assert [r["verdict"] for r in tables["_verdicts"]] == ["inconclusive"] * 3  # one seed
    for figure in ("ablation.png", "ablation_convergence.png"):
        assert (repo / "results" / figure).stat().st_size > 10_000

    # every file of ours a stage imported or read is one of its dependencies, and the real
    # `dvc status` sees a change to any of them; a figure of the default pipeline reruns
    # no run of the ablation, its own figure only the summary
    assert undeclared(repo, probe) == {}
    assert undeclared_static(repo, probe) == {}
    imported = imported_by_stage(repo, probe)
    assert len(imported) == 2 * 2 + 1 + 1
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

    # one stage again, forced: the same metrics and test scores, byte for byte
    kept = ["metrics/ablation/seed-0.json", "results/ablation/scores/seed-0/control-d.npz"]
    before = [(repo / name).read_bytes() for name in kept]
    run(["dvc", "repro", "-f", "-s", "experiments/ablation/dvc.yaml:run@0"], repo)
    assert [(repo / name).read_bytes() for name in kept] == before


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


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
              "variant_settings.b over train.num_scenes: must be at least 1"),
             ({"comparisons": [["a", "z"]]}, "comparisons: ['a', 'z']: expected [VARIANT, "),
             ({"reading": {**params["reading"], "control": "nowhere"}},
              "reading.control: 'nowhere' is not one of the data"),
             ({"reading": {**params["reading"], "bootstrap_samples": 1.5}},
              "reading.bootstrap_samples: expected a whole number"),
             ({"data": ["positive", "con-trol"]}, "data: 'con-trol': expected a name without")]
    for change, message in cases:
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump({**params, **change}))
        code, _, err = salgl_main("ablation", "--params", str(path), "run", "0")
        assert code == 2, err
        assert f"{path}: {message}" in err, err
        assert not (tmp_path / "models").exists()


def test_readme_headline_numbers_are_the_committed_table() -> None:
    """The README's ablation table and verdicts quote results/ablation*.csv as the run wrote
    them."""
    table = {(r["data"], r["variant"]): r for r in read_csv(REPO / "results/ablation.csv")}
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Is scene awareness worth it?"):]
    section = section[:section.index("\n## ")]
    rows = [line for line in section.splitlines() if line.startswith("| (")]
    assert [line[3] for line in rows] == ["a", "b", "d", "s"]
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        for data, cell in zip(("positive", "control"), cells, strict=True):
            row = table[data, line[3]]
            runs, void = int(row["runs"]), int(row["void_runs"])
            assert cell == (f"{float(row['mAP_mean']):.3f} ± {float(row['mAP_std']):.3f} "
                            f"({runs} of {runs + void})")

    verdicts = {r["comparison"]: r for r in read_csv(REPO / "results/ablation_verdicts.csv")}
    assert verdicts["a-b"]["verdict"] == "unreadable: every seed has a void run"
    assert "(a) - (b) is **unreadable**" in section
    assert verdicts["a-d"]["verdict"] == "does not help" and verdicts["a-d"]["seeds"] == "3"
    assert "(a) - (d) **does not help**" in section
    assert verdicts["s-b"]["verdict"] == "inconclusive" and verdicts["s-b"]["seeds"] == "1"
    assert "(s) - (b) is **inconclusive** (one converged seed)" in section
    diffs = read_csv(REPO / "results/ablation_differences.csv")
    every_ab = next(r for r in diffs if (r["comparison"], r["data"], r["runs"]) == (
        "a-b", "positive", "all, void included (outside the rule)"))
    assert f"rule, it is {float(every_ab['mean']):+.3f} on the positive control" in section
    ad = next(r for r in diffs if (r["comparison"], r["data"], r["runs"]) == (
        "a-d", "positive", "converged"))
    assert f"SALGL scored\n  {-float(ad['mean']):.3f} below the plain backbone" in section
    void = [r for r in read_csv(REPO / "results/ablation_convergence.csv") if r["status"] == "void"]
    assert f"{len(void)} of 40 runs are void" in section

    # the design as the params file has it, and the learned scenes' range over seeds
    params = yaml.safe_load((REPO / "experiments/ablation/params.yaml").read_text())
    runs = len(params["data"]) * len(params["variants"]) * len(params["seeds"])
    assert runs == 40 and len(params["seeds"]) == 5
    assert (params["train"]["img_size"], params["train"]["epochs"]) == (32, 16)
    assert "(40 runs, five paired seeds, 32 px, ResNet-10t from scratch, 16 epochs," in section
    nmi = [json.loads(path.read_text())["positive-a"]["scene_nmi"]
           for path in sorted((REPO / "metrics/ablation").glob("seed-*.json"))]
    assert f"NMI\n  {min(nmi):.2f} to {max(nmi):.2f} across seeds" in section
