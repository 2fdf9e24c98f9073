"""The real `dvc repro` on a tiny params set, in a temporary copy of the repository; then
sharing its weights through a DVC remote, for real, on loopback: a local-folder remote, and
the same folder served read-only over HTTP on 127.0.0.1.

Every test here uses the one reproduced repository, in file order, so they share a module:
the test runner's workers split the suite by file (scripts/run-tests.sh).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dvc_repo import EXP_SHOW_DROP, SWEEP_SHOW, declare_every_pipeline, run
from local_ports import free_port, wait_until_listening
from stage_deps import covered, imported_by_stage, undeclared, undeclared_static


@pytest.mark.slow
def test_dvc_repro_end_to_end(reproduced: tuple[Path, dict]) -> None:
    repo, _ = reproduced
    metrics = json.loads((repo / "metrics" / "fashion_scenes_all.json").read_text())
    headline = json.loads((repo / "metrics" / "fashion_scenes.json").read_text())
    assert list(headline) == ["mAP", "CF1", "OF1", "val_mAP"]  # what DVC compares
    assert all(headline[key] == metrics[key] for key in headline)
    expected = {"mAP", "mAP_noninterp", "CP", "CR", "CF1", "OP", "OR", "OF1", "CP_top3",
                "CR_top3", "CF1_top3", "OP_top3", "OR_top3", "OF1_top3", "scene_entropy",
                "num_images", "num_labels", "labels_without_positives"}
    assert expected <= metrics.keys()
    for key in expected - {"scene_entropy", "num_images", "num_labels",
                           "labels_without_positives"}:
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["num_images"] == 24 and metrics["num_labels"] == 10
    assert metrics["selected_on"] == "val" and 0.0 <= metrics["val_mAP"] <= 1.0
    assert 0.0 <= metrics["CF1_calibrated"] <= 1.0
    assert 0.0 <= metrics["scene_entropy"] <= 0.7 + 1e-9  # at most log 2 for 2 scenes
    figures = repo / "plots" / "fashion_scenes" / "figures"
    assert (figures.parent / "training_curves.png").is_file()
    assert not (figures / "training_curves.png").exists()  # drawn once by dvc plots show
    assert (figures / "scene_1_cooccurrence.png").is_file()
    assert (repo / "models" / "fashion_scenes" / "model.safetensors").is_file()
    assert "scene_nmi" in json.loads((repo / "metrics" / "fashion_scenes_scenes.json").read_text())


@pytest.mark.slow
def test_a_failed_stage_keeps_the_last_good_outputs(reproduced: tuple[Path, dict]) -> None:
    repo, params = reproduced
    model = repo / "models" / "fashion_scenes" / "model.safetensors"
    kept = {p: p.read_bytes() for p in (model, repo / "metrics" / "fashion_scenes.json",
                                        repo / "dvclive" / "fashion_scenes" / "metrics.json")}
    bad = yaml.safe_load(yaml.safe_dump(params))
    bad["train"]["fashion_scenes"]["batch_size"] = 10_000
    (repo / "params.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    failed = run(["dvc", "repro"], repo, check=False)
    assert failed.returncode != 0
    assert "train.fashion_scenes.batch_size: 10000 is larger" in failed.stderr + failed.stdout
    assert {p: p.read_bytes() for p in kept} == kept
    (repo / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    assert "Running stage" not in run(["dvc", "repro"], repo).stdout


@pytest.mark.slow
def test_a_changed_setting_reruns_its_stages(reproduced: tuple[Path, dict]) -> None:
    repo, params = reproduced
    changed = yaml.safe_load(yaml.safe_dump(params))
    changed["train"]["fashion_scenes"]["lr"] = 0.002
    (repo / "params.yaml").write_text(yaml.safe_dump(changed), encoding="utf-8")
    diff = run(["dvc", "params", "diff"], repo)
    assert "train.fashion_scenes.lr" in diff.stdout
    third = run(["dvc", "repro"], repo)
    ran = {line.split("'")[1] for line in third.stdout.splitlines()
           if line.startswith("Running stage")}
    assert ran == {"train@fashion_scenes", "evaluate@fashion_scenes", "plots@fashion_scenes"}
    shown = run(["dvc", "metrics", "show", "--json"], repo)
    assert "mAP" in shown.stdout and "dvclive" not in shown.stdout  # no step, no lr
    diff = run(["dvc", "metrics", "diff"], repo).stdout.splitlines()
    assert diff and max(len(line) for line in diff) <= 120
    table = run(["dvc", "exp", "show", "--only-changed", "--no-pager", "--drop", EXP_SHOW_DROP],
                repo, columns=120).stdout.splitlines()
    assert max(len(line) for line in table) <= 120, "\n".join(table)
    header = next(line for line in table if "Experiment" in line)
    columns = header.split()
    assert columns[:3] == ["Experiment", "Created", "mAP"], header  # test mAP leads
    assert "train.fashion_scenes.lr" in header and "num_images" not in header


@pytest.mark.slow
def test_the_daily_loop_with_every_pipeline_declared(reproduced: tuple[Path, dict],
                                                     tmp_path: Path) -> None:
    """As in a fresh clone of the repository: the ablation's and the pretrained demo's
    dvc.yaml, params, locks and committed numbers present, their outputs never pulled. The
    README's comparison command still shows the four main metrics of each experiment first,
    within 120 columns; `dvc metrics show` lists the default run's files alone; `dvc
    checkout dvc.yaml` (the README's way back) exits 0 although the other pipelines'
    outputs are in no cache."""
    repo, _ = reproduced
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy, symlinks=True)
    declare_every_pipeline(copy)
    run(["git", "add", "-A"], copy)
    run(["git", "commit", "-qm", "every pipeline declared"], copy)
    shown = run(["dvc", "metrics", "show", "--json"], copy).stdout
    assert "fashion_scenes.json" in shown and "ablation" not in shown
    assert "pretrained" not in shown
    run(["dvc", "exp", "run", "-S", "train.fashion_scenes.lr=0.004"], copy)
    table = run(["dvc", "exp", "show", "--only-changed", "--no-pager", "--drop", EXP_SHOW_DROP],
                copy, columns=120).stdout.splitlines()
    assert max(len(line) for line in table) <= 120, "\n".join(table)
    header = next(line for line in table if "Experiment" in line).split()
    assert header[:6] == ["Experiment", "Created", "mAP", "CF1", "OF1", "val_mAP"], header
    assert "train.fashion_scenes.lr" in header, "\n".join(table)
    rows = [line for line in table if re.search(r"\d\.\d{4}", line)]
    assert len(rows) >= 2  # the workspace or HEAD, and the experiment, each with its numbers
    back = run(["dvc", "checkout", "dvc.yaml"], copy, check=False)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "up to date" in run(["dvc", "status", "dvc.yaml"], copy).stdout


@pytest.mark.slow
def test_a_queued_sweep_shows_its_runs_and_a_failed_runs_error(reproduced: tuple[Path, dict],
                                                              tmp_path: Path) -> None:
    """README "Sweeps": a grid queued, the queue run, both runs in the comparison table with
    their metrics; a run that fails leaves its error in `dvc queue logs`. Queued runs get the
    prepared data from the cache: none of them prepares again."""
    repo, _ = reproduced
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy, symlinks=True)
    declare_every_pipeline(copy)
    run(["git", "add", "-A"], copy)
    run(["git", "commit", "-qm", "every pipeline declared"], copy)
    # a grid over an evaluation setting: each run reruns evaluate and plots only (cheaper)
    run(["dvc", "exp", "run", "--queue", "-S", "evaluate.fashion_scenes.threshold=0.4,0.6"],
        copy)
    run(["dvc", "exp", "run", "--queue", "-n", "too-big", "-S",
         "train.fashion_scenes.batch_size=10000"], copy)
    try:
        run(["dvc", "queue", "start"], copy)
        deadline = time.monotonic() + 400
        while True:
            status = run(["dvc", "queue", "status"], copy, columns=200).stdout
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            assert time.monotonic() < deadline, status
            time.sleep(3)
    finally:
        run(["dvc", "queue", "stop", "--kill"], copy, check=False)
    assert len(re.findall(r"\bSuccess\b", status)) == 2 and "Failed" in status, status
    logs = run(["dvc", "queue", "logs", "too-big"], copy, check=False)
    said = logs.stdout + logs.stderr
    assert "salgl train: error: train.fashion_scenes.batch_size: 10000 is larger" in said, said
    done = [line.split()[1] for line in status.splitlines() if "Success" in line]
    for name in ["too-big", *done]:  # "Task  Name  Created  Status" rows
        logs = run(["dvc", "queue", "logs", name], copy, check=False)
        said = logs.stdout + logs.stderr
        assert "Running stage 'prepare@fashion_scenes'" not in said  # from the cache
        if name != "too-big":  # only the stages the changed setting touches
            assert "Running stage 'evaluate@fashion_scenes'" in said, said
            assert "Running stage 'train@fashion_scenes'" not in said, said
    table = run([*SWEEP_SHOW, "--no-pager"], copy, columns=120).stdout  # as printed
    assert max(len(line) for line in table.splitlines()) <= 120, table
    header = next(line for line in table.splitlines() if "Experiment" in line).split()
    assert "evaluate.fashion_scenes.threshold" in header and "…" not in header, table
    # every column as CSV, whose cells are not cut to the terminal's width (the grid leaves
    # test mAP as it was, so --only-changed would drop it)
    shown = run(["dvc", "exp", "show", "--csv", "--drop", EXP_SHOW_DROP], copy).stdout
    rows = list(csv.DictReader(io.StringIO(shown)))
    for threshold in ("0.4", "0.6"):
        runs = [row for row in rows if row.get("evaluate.fashion_scenes.threshold") == threshold]
        assert len(runs) == 1, shown
        for metric in ("mAP", "CF1", "OF1", "val_mAP"):
            assert 0 <= float(runs[0][metric]) <= 1, shown


@pytest.mark.slow
def test_dvc_status_lists_every_stage_whose_code_changed(reproduced: tuple[Path, dict]) -> None:
    """Each stage declares every file of ours it imported or read during the tiny repro;
    then, through the real `dvc status`: a comment appended to every imported salgl file is
    seen by each stage that imports it, a figure module only by plots, a code default of
    config.py by every stage, and `dvc params diff` shows a spelled-out training setting."""
    repo, _ = reproduced
    assert "Running stage" not in run(["dvc", "repro"], repo).stdout
    probe = repo.parent / "stage_probe.jsonl"
    assert undeclared(repo, probe) == {}
    assert undeclared_static(repo, probe) == {}  # the paths the tiny run did not take
    imported = imported_by_stage(repo, probe)
    assert set(imported) == {f"{s}@fashion_scenes"
                             for s in ("prepare", "embed", "train", "evaluate", "plots")}
    assert "salgl/metrics.py" in imported["train@fashion_scenes"]  # selection uses it
    assert not any(f.startswith("salgl/figures/") for f in imported["train@fashion_scenes"])

    def status_after(edits: dict[str, str]) -> dict:
        kept = {name: (repo / name).read_bytes() for name in edits}
        try:
            for name, (old, new) in edits.items():  # old "": append new
                text = (repo / name).read_text(encoding="utf-8")
                assert old in text, (name, old)
                text = text.replace(old, new, 1) if old else text + new
                (repo / name).write_text(text, encoding="utf-8")
            return json.loads(run(["dvc", "status", "--json"], repo).stdout or "{}")
        finally:
            for name, data in kept.items():
                (repo / name).write_bytes(data)

    every = sorted(set().union(*imported.values()))
    stale = status_after({name: ("", "# touched\n") for name in every})
    for stage, files in imported.items():
        changed = [repo / dep for entry in stale.get(stage, [])
                   for dep in entry.get("changed deps", {})]
        for name in files:
            assert covered(repo / name, changed), f"{stage}: dvc status misses {name}"

    figure = {"salgl/figures/pr.py": ("", "# touched\n")}
    assert set(status_after(figure)) == {"plots@fashion_scenes"}
    loop = {"salgl/engine.py": ("", "# touched\n")}  # the training loop: train alone
    assert set(status_after(loop)) == {"train@fashion_scenes"}
    default = {"salgl/config.py": ("gamma_neg: float = _f(2.0", "gamma_neg: float = _f(4.0")}
    assert set(status_after(default)) == set(imported)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], repo).stdout

    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    assert params["train"]["fashion_scenes"]["gamma_neg"] == 2.0
    changed = yaml.safe_load(yaml.safe_dump(params))
    changed["train"]["fashion_scenes"]["gamma_neg"] = 4.0
    original = (repo / "params.yaml").read_bytes()
    (repo / "params.yaml").write_text(yaml.safe_dump(changed), encoding="utf-8")
    try:
        diff = run(["dvc", "params", "diff"], repo).stdout
        assert re.search(r"train\.fashion_scenes\.gamma_neg\s+2\.0\s+4\.0", diff), diff
    finally:
        (repo / "params.yaml").write_bytes(original)


# ------------------------------------------------------------------ sharing weights

MODEL = Path("models/fashion_scenes/model.safetensors")


def serve(folder: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                               str(port), "--directory", str(folder)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_listening(port, server, 20)
    except AssertionError:
        server.kill()
        raise
    return server


def clone(source: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", str(source), str(dest)], source.parent)
    return dest


def fails(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "DVC_NO_ANALYTICS": "1",
                                 "PATH": str(Path(sys.executable).parent) + os.pathsep
                                 + os.environ.get("PATH", "")})
    assert result.returncode != 0, result.stdout
    return result


@pytest.mark.slow
def test_push_pull_and_read_only_http_remote(reproduced: tuple[Path, dict],
                                             tmp_path: Path) -> None:
    repo, _ = reproduced
    assert "Running stage" not in run(["dvc", "repro"], repo).stdout
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "store", str(remote)], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results and remote"], repo)
    run(["dvc", "push"], repo)
    weights = (repo / MODEL).read_bytes()

    # a colleague: clone, pull, nothing to rebuild
    first = clone(repo, tmp_path / "colleague")
    assert not (first / MODEL).exists()
    run(["dvc", "pull", "dvc.yaml"], first)  # as the README writes it
    assert (first / MODEL).read_bytes() == weights
    assert "up to date" in run(["dvc", "status", "dvc.yaml"], first).stdout
    assert "Running stage" not in run(["dvc", "repro"], first).stdout

    # a model-registry version, fetched without cloning
    run(["git", "tag", "-a", "fashion-scenes-model@v0.1.0", "-m", "tiny model"], repo)
    run(["dvc", "artifacts", "get", str(repo), "fashion-scenes-model", "-o",
         str(tmp_path / "got.safetensors")], tmp_path)
    assert (tmp_path / "got.safetensors").read_bytes() == weights

    # the same remote folder as a read-only HTTP remote; only one dataset's weights
    port = free_port()
    server = serve(remote, port)
    try:
        second = clone(repo, tmp_path / "reader")
        run(["dvc", "remote", "add", "--local", "-d", "web", f"http://127.0.0.1:{port}"],
            second)
        run(["dvc", "pull", "train@fashion_scenes"], second)
        assert (second / MODEL).read_bytes() == weights
        assert not (second / "data" / "prepared" / "fashion_scenes").exists()

        # what a user sees when the remote lacks an object
        for path in remote.rglob("*"):
            if path.is_file() and path.stat().st_size == len(weights):
                path.unlink()
        third = clone(repo, tmp_path / "unlucky")
        run(["dvc", "remote", "add", "--local", "-d", "web", f"http://127.0.0.1:{port}"],
            third)
        missing = fails(["dvc", "pull", "train@fashion_scenes"], third)
        text = missing.stdout + missing.stderr
        assert "failed to pull data from the cloud" in text.lower() or "missing" in text.lower()
        assert str(MODEL) in text
    finally:
        server.terminate()
        server.wait(timeout=10)
    shutil.rmtree(remote)
