"""A tiny copy of this repository for the tests that run the real `dvc` command: built,
reproduced once and shared (session scope) by the pipeline and remote tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fakes import TINY_TRAIN, make_source
from stage_deps import probe_env

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


REPO = Path(__file__).resolve().parents[1]


def _readme_drops() -> tuple[str, list[str]]:
    """The README's two recipes for a readable `dvc exp show`, read from it: the columns
    dropped when comparing runs (Everyday use), and the whole command for a queued sweep
    (Sweeps)."""
    import re
    import shlex

    text = (REPO / "README.md").read_text(encoding="utf-8")
    compare = re.search(r"dvc exp show --only-changed \\\n\s+--drop '([^']+)'", text).group(1)
    sweeps = text[text.index("### Sweeps"):]
    sweep = re.search(r"\n(dvc exp show [^\n]+)\n", sweeps).group(1)
    return compare, shlex.split(sweep)


EXP_SHOW_DROP, SWEEP_SHOW = _readme_drops()


def declare_every_pipeline(repo: Path) -> None:
    """Put in ``repo`` what a fresh clone of this repository has beside the default pipeline:
    every pipeline under experiments/ (dvc.yaml, params, lock) and their committed numbers,
    whose outputs are in no cache."""
    listed = subprocess.run(["git", "ls-files", "experiments", "metrics"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for name in listed:
        if name.startswith("experiments/") or "/" in name.removeprefix("metrics/"):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)


def run(args: list[str], cwd: Path, check: bool = True, columns: int | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, **GIT_ENV, "SALGL_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), **(env or {})}
    if columns:
        env["COLUMNS"] = str(columns)
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0 or not check, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def copy_repository(dest: Path, ablation: bool = False) -> None:
    """Tracked and untracked-but-not-ignored files, minus pipeline outputs; the ablation's
    pipeline only with ``ablation`` (else its stages would count in `dvc status`)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    skip = ("data/", "models/", "plots/", "metrics/", "dvclive/", "state/", "dvc.lock",
            "results/", "experiments/ablation/dvc.lock")
    if not ablation:
        skip += ("experiments/",)
    for name in listed:
        if name.startswith(skip) or not (REPO / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)


def tiny_params(source: Path) -> dict:
    """The committed params.yaml's fashion_scenes settings, every one spelled out, with
    tiny sizes."""
    real = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))

    def section(stage: str, **changes) -> dict:
        return {"fashion_scenes": {**real[stage]["fashion_scenes"], **changes}}

    return {
        "datasets": {"fashion_scenes": str(source)},
        "official": {},
        "nproc": 1,
        "prepare": section("prepare", source=str(source), image_size=32, train_images=48,
                           test_images=24, seed=0),
        "embed": section("embed", dim=8, epochs=30),
        "train": section("train", **TINY_TRAIN, num_scenes=2, epochs=1, batch_size=16,
                         lr=0.003, ema_decay=0.9),
        "evaluate": section("evaluate", threshold=0.5),
        "plots": section("plots", pr_labels=4, cloud_words=10),
    }


def build_tiny_repo(repo: Path, fmnist: Path) -> dict:
    """A copy of this repository with tiny params, committed once (DVCLive needs a commit)."""
    repo.mkdir(parents=True)
    copy_repository(repo)
    params = tiny_params(make_source(fmnist, n_train=60, n_test=30))
    (repo / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny"], repo)
    return params


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One tiny repository, reproduced once (each stage command recording what it imports
    and reads in ../stage_probe.jsonl) and committed. test_dvc_pipeline.py's tests then
    change it in file order, and its last test pushes and clones it."""
    root = tmp_path_factory.mktemp("pipeline")
    repo = root / "repo"
    params = build_tiny_repo(repo, root / "fmnist")
    first = run(["dvc", "repro"], repo, env=probe_env(root / "stage_probe.jsonl"))
    for stage in ("prepare", "embed", "train", "evaluate", "plots"):
        assert f"Running stage '{stage}@fashion_scenes'" in first.stdout
    second = run(["dvc", "repro"], repo)
    assert "Running stage" not in second.stdout
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results"], repo)
    return repo, params


