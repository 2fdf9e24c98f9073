"""What each DVC stage really uses, against what it declares.

A tiny `dvc repro` runs with ``probe_env`` set: every stage command then records (through
tests/stage_probe/sitecustomize.py) the files of the modules it imported and the files it
opened for reading. ``undeclared`` names each file of ours that a stage used but that none of
its dependencies, outputs or params files covers. The tiny run takes one path through the
code (the embedded dataset, one process); ``static_closure`` adds every module those modules
can import on any other path (imports inside functions included), plus what the stage's own
entry functions import, so that the real benchmarks', own data's and GloVe's code paths are
held to the same rule."""

from __future__ import annotations

import ast
import functools
import json
import os
import shlex
from collections.abc import Iterator
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


def records_by_stage(repo: Path, log: Path, stages: dict[str, StageDeclaration]
                     ) -> Iterator[tuple[StageDeclaration, dict]]:
    """Each probe record with the stage whose command it is."""
    by_command = {" ".join(shlex.split(s.cmd)): s for s in stages.values()}
    for record in stage_records(log):
        yield by_command[" ".join(["python", *record["argv"]])], record


def undeclared(repo: Path, log: Path) -> dict[str, list[str]]:
    """Stage name -> the repository-relative files it used without declaring them."""
    missing: dict[str, list[str]] = {}
    for stage, record in records_by_stage(repo, log, declared_stages(repo)):
        allowed = stage.deps + stage.params + stage.outs
        for path in sorted(used_files(record, repo)):
            if not covered(path, allowed):
                missing.setdefault(stage.name, []).append(str(path.relative_to(repo)))
    return missing


def imported_by_stage(repo: Path, log: Path,
                      stages: dict[str, StageDeclaration] | None = None
                      ) -> dict[str, set[str]]:
    """Stage name -> the repository-relative salgl files its command imported."""
    result: dict[str, set[str]] = {}
    for stage, record in records_by_stage(repo, log, stages or declared_stages(repo)):
        files = {str(p.relative_to(repo)) for p in used_files(record, repo)
                 if p.is_relative_to(repo / "salgl") and p.suffix == ".py"}
        result.setdefault(stage.name, set()).update(files)
    return result


# ----------------------------------------------------------------------------- static imports

# Modules whose imports depend on the stage: only the stage's own functions in them are
# followed (config.py imports the backbone module only to check the train settings).
DISPATCH = {"salgl.cli", "salgl.pipeline", "salgl.ablation.run", "salgl.config"}
_CLI = "salgl.cli"
ENTRY_FUNCTIONS: dict[str, list[tuple[str, str]]] = {
    "prepare": [(_CLI, "_cmd_prepare"), ("salgl.pipeline", "run_prepare")],
    "embed": [(_CLI, "_cmd_embed"), ("salgl.pipeline", "run_embed")],
    "train": [(_CLI, "_cmd_train"), ("salgl.pipeline", "run_train"),
              ("salgl.config", "TrainConfig.check")],
    "evaluate": [(_CLI, "_cmd_evaluate"), ("salgl.pipeline", "run_evaluate")],
    "plots": [(_CLI, "_cmd_plots"), ("salgl.pipeline", "run_plots")],
    "evaluate-official": [(_CLI, "_cmd_evaluate_official"),
                          ("salgl.pipeline", "run_evaluate_official")],
    "ablation/prepare": [(_CLI, "_cmd_ablation"), (_CLI, "_ablation_prepare"),
                         ("salgl.ablation.run", "prepare_data"),
                         ("salgl.pipeline", "run_prepare")],
    "ablation/embed": [(_CLI, "_cmd_ablation"), (_CLI, "_ablation_embed"),
                       ("salgl.ablation.run", "embed_data"), ("salgl.pipeline", "run_embed")],
    "ablation/run": [(_CLI, "_cmd_ablation"), (_CLI, "_ablation_run"),
                     ("salgl.ablation.run", "run_seed"),
                     ("salgl.ablation.run", "train_and_score"),
                     ("salgl.ablation.run", "_start_lane"),
                     ("salgl.ablation.run", "learned_scene_nmi"),
                     ("salgl.config", "TrainConfig.check")],
    "ablation/summary": [(_CLI, "_cmd_ablation"), (_CLI, "_ablation_summary")],
}


@functools.cache
def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """salgl module name -> its file."""
    files = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


@functools.cache
def syntax_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def imports_in(node: ast.AST, known: set[str], importer: str) -> set[str]:
    """The salgl modules that the import statements anywhere under ``node`` name."""
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Import):
            names = [alias.name for alias in child.names]
        elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
            names = [child.module, *(f"{child.module}.{a.name}" for a in child.names)]
        else:
            continue
        found.update(n for n in names if n in known and n != importer)
    return found


@functools.cache
def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the salgl modules it imports anywhere in its source (lazy imports included)."""
    files = module_files(package)
    return {name: imports_in(syntax_tree(path), set(files), name)
            for name, path in files.items()}


def entry_imports(kind: str, package: Path = PACKAGE) -> set[str]:
    """What the stage's own functions (``name`` or ``Class.name``) in the dispatching modules
    import."""
    files = module_files(package)
    found = set()
    for module, qualname in ENTRY_FUNCTIONS[kind]:
        node: ast.AST = syntax_tree(files[module])
        for part in qualname.split("."):
            node = next(n for n in ast.iter_child_nodes(node)
                        if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == part)
        found |= imports_in(node, set(files), module)
    return found


def stage_kind(name: str) -> str:
    """prepare@fashion_scenes -> prepare; PATH/dvc.yaml:run@x -> ablation/run."""
    if ":" in name:
        return "ablation/" + name.split(":", 1)[1].split("@")[0]
    return name.split("@")[0]


def static_closure(roots: set[str], kind: str, package: Path = PACKAGE) -> set[str]:
    """Every module reachable from ``roots`` and the stage's entry functions, following every
    import except those of the dispatching modules."""
    graph = import_graph(package)
    seen: set[str] = set()
    todo = list(roots | entry_imports(kind, package))
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        if module not in DISPATCH:
            todo.extend(graph[module] - seen)
        # importing a submodule runs its packages' __init__ first
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if
                    ".".join(parts[:i]) in graph)
    return seen


def undeclared_static(repo: Path, log: Path) -> dict[str, list[str]]:
    """As ``undeclared``, for the static closure of each stage's imported modules."""
    files = module_files()
    relative = {m: Path("salgl") / f.relative_to(PACKAGE) for m, f in files.items()}
    module_of = {str(path): m for m, path in relative.items()}
    declared = declared_stages(repo)
    missing: dict[str, list[str]] = {}
    for name, imported in imported_by_stage(repo, log, declared).items():
        roots = {module_of[i] for i in imported}
        for module in sorted(static_closure(roots, stage_kind(name))):
            if not covered(repo / relative[module], declared[name].deps):
                missing.setdefault(name, []).append(str(relative[module]))
    return missing
