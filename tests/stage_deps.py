"""What each DVC stage really uses, against what it declares.

A tiny `dvc repro` runs with ``probe_env`` set: every stage command then records (through
tests/stage_probe/sitecustomize.py) the files of the modules it imported and the files it
opened for reading. ``undeclared`` names each file of ours that a stage used but that none of
its dependencies, outputs or params files covers."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import salgl

PROBE_DIR = Path(__file__).resolve().parent / "stage_probe"
PACKAGE = Path(salgl.__file__).resolve().parent  # the salgl that stage commands import
# Git's and DVC's own files, which DVCLive reads to find its repository: not inputs
VCS_FILES = (".dvc", ".git", ".dvcignore", ".gitignore")


def probe_env(log: Path) -> dict[str, str]:
    """Environment for a `dvc repro` whose stage commands record what they use in ``log``."""
    path = os.pathsep.join(p for p in (str(PROBE_DIR), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "SALGL_STAGE_PROBE": str(log)}


@dataclass
class StageDeclaration:
    name: str
    cmd: str
    deps: list[Path]     # absolute paths of file and folder dependencies
    params: list[Path]   # params files it reads keys of
    outs: list[Path]
    param_keys: set[str]  # the keys it declares (a whole file's: its top-level keys)


def declared_stages(repo: Path) -> dict[str, StageDeclaration]:
    """Every stage of every dvc.yaml in ``repo``, as DVC itself resolves them."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    stages = {}
    with Repo(str(repo)) as dvc:
        for stage in dvc.index.stages:
            files = [Path(d.fs_path) for d in stage.deps if not isinstance(d, ParamsDependency)]
            params = [Path(d.fs_path) for d in stage.deps if isinstance(d, ParamsDependency)]
            keys = {k for d in stage.deps if isinstance(d, ParamsDependency) for k in d.params}
            name = stage_name(repo, Path(stage.path), stage.name)
            stages[name] = StageDeclaration(name, stage.cmd, files, params,
                                            [Path(o.fs_path) for o in stage.outs], keys)
    return stages


def stage_name(repo: Path, dvcfile: Path, name: str) -> str:
    """As `dvc status` names it from the repository root: NAME for the root dvc.yaml, else
    PATH/dvc.yaml:NAME."""
    relative = dvcfile.resolve().relative_to(repo.resolve())
    return name if relative == Path("dvc.yaml") else f"{relative.as_posix()}:{name}"


def stage_records(log: Path) -> list[dict]:
    """The probe's records of stage commands (python stages/NAME.py ...)."""
    records = []
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["argv"] and record["argv"][0].startswith("stages/"):
            records.append(record)
    return records


def used_files(record: dict, repo: Path) -> set[Path]:
    """Our files one stage command used, as paths inside ``repo``: the salgl modules it
    imported (mapped from wherever salgl is installed), its stage script, and every file
    inside the repository it opened for reading."""
    used = {repo / record["argv"][0]}
    for module in record["modules"]:
        path = Path(module)
        if path.is_relative_to(PACKAGE) and path.is_file():
            used.add(repo / "salgl" / path.relative_to(PACKAGE))
    for opened in record["opened"]:
        path = Path(opened)
        if (path.is_relative_to(repo) and path.is_file()
                and path.relative_to(repo).parts[0] not in VCS_FILES):
            used.add(path)
    return used


def covered(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def undeclared(repo: Path, log: Path) -> dict[str, list[str]]:
    """Stage name -> the repository-relative files it used without declaring them."""
    stages = {" ".join(shlex.split(s.cmd)): s for s in declared_stages(repo).values()}
    missing: dict[str, list[str]] = {}
    for record in stage_records(log):
        stage = stages[" ".join(["python", *record["argv"]])]
        allowed = stage.deps + stage.params + stage.outs
        for path in sorted(used_files(record, repo)):
            if not covered(path, allowed):
                missing.setdefault(stage.name, []).append(str(path.relative_to(repo)))
    return missing


def imported_by_stage(repo: Path, log: Path) -> dict[str, set[str]]:
    """Stage name -> the repository-relative salgl files its command imported."""
    stages = {" ".join(shlex.split(s.cmd)): s for s in declared_stages(repo).values()}
    result: dict[str, set[str]] = {}
    for record in stage_records(log):
        stage = stages[" ".join(["python", *record["argv"]])]
        files = {str(p.relative_to(repo)) for p in used_files(record, repo)
                 if p.is_relative_to(repo / "salgl") and p.suffix == ".py"}
        result.setdefault(stage.name, set()).update(files)
    return result
