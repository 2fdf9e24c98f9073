"""The package's shape and the pipeline's settings, checked from the source: no import
cycle, small classes, and every setting that shapes a stage's output either spelled out in
the params the stage declares or defaulted in a file the stage depends on."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from salgl import config

from dvc_repo import REPO, run
from stage_deps import (
    covered,
    declared_stages,
    import_graph,
    module_files,
    static_closure,
)

PACKAGE = REPO / "salgl"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph(PACKAGE)
    assert "salgl.train" in graph["salgl.pipeline"]  # the graph sees lazy imports
    assert len(graph) == len(module_files(PACKAGE))
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_find_cycle_sees_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_classes_stay_small_and_the_recipe_reads_in_one_screen() -> None:
    sizes = {}
    for module, path in module_files(PACKAGE).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                sizes[f"{module}.{node.name}"] = node.end_lineno - node.lineno + 1
                if node.name == "Trainer":
                    run = next(n for n in node.body
                               if isinstance(n, ast.FunctionDef) and n.name == "run")
                    assert run.end_lineno - run.lineno + 1 <= 45, "Trainer.run grew"
    assert "salgl.train.Trainer" in sizes
    too_big = {name: n for name, n in sizes.items() if n > 200}
    assert not too_big, too_big


# ----------------------------------------------------------------------------- settings

MAIN_SETTINGS = {"prepare": None, "embed": [config.EmbedConfig], "train": [config.TrainConfig],
                 "evaluate": [config.EvaluateConfig], "plots": [config.PlotsConfig]}
ABLATION_SETTINGS = {"prepare": [("prepare", config.FashionScenesConfig)],
                     "embed": [("embed", config.EmbedConfig)],
                     "run": [("train", config.TrainConfig), ("evaluate", config.EvaluateConfig)],
                     "run-scene-counts": [("train", config.TrainConfig),
                                          ("evaluate", config.EvaluateConfig)],
                     "summary": []}


def stage_settings(name: str, params: dict, ablation: dict) -> list[tuple[str, type, dict]]:
    """(params key, settings class, the params section) for each settings group a stage
    parses."""
    if name.startswith("experiments/ablation/dvc.yaml:"):
        stage = name.split(":", 1)[1].split("@")[0]
        return [(key, cls, ablation[key]) for key, cls in ABLATION_SETTINGS[stage]]
    stage, item = name.split("@")
    if stage == "evaluate-official":
        dataset = params["official"][item]["dataset"]
        return [(f"official.{item}", config.OfficialConfig, params["official"][item]),
                (f"plots.{dataset}", config.PlotsConfig, params["plots"].get(dataset) or {})]
    classes = MAIN_SETTINGS[stage] or [config.PREPARE_CONFIGS.get(item, config.OwnDatasetConfig)]
    section = (params.get(stage) or {}).get(item) or {}
    return [(f"{stage}.{item}", cls, section) for cls in classes]


@pytest.fixture(scope="module")
def with_official(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's pipeline files with one released experiment listed."""
    import shutil

    repo = tmp_path_factory.mktemp("layout")
    for name in ("dvc.yaml", "experiments/ablation/dvc.yaml", "experiments/ablation/params.yaml"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["official"] = {"coco448": {"dir": "data/official/coco448", "dataset": "mscoco"}}
    params["datasets"] = {**params["datasets"], "mscoco": "data/raw/mscoco"}
    (repo / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    run(["git", "init", "-q"], repo)
    return repo


def test_every_setting_is_a_param_or_its_default_a_dependency(with_official: Path) -> None:
    """The rule of docs/method-notes.md: the default run's stages read every setting from a
    param they declare; every other stage depends on salgl/config.py, where its defaults are."""
    repo = with_official
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    ablation = yaml.safe_load((repo / "experiments/ablation/params.yaml").read_text())
    defaults = repo / "salgl" / "config.py"
    stages = declared_stages(repo)
    assert "evaluate-official@coco448" in stages and "train@mscoco" in stages
    checked = 0
    for name, stage in stages.items():
        keys = stage.param_keys
        default_is_dep = covered(defaults, stage.deps)
        for key, cls, section in stage_settings(name, params, ablation):
            declared = key in keys or key.split(".")[0] in keys
            for field in dataclasses.fields(cls):
                if name.endswith("@fashion_scenes"):
                    assert declared and field.name in section, (
                        f"{name}: {key}.{field.name} is not spelled out in a declared param")
                else:
                    assert default_is_dep, (
                        f"{name}: {key}.{field.name} defaults in salgl/config.py, which is "
                        "not a dependency")
                checked += 1
    assert checked > 300


@pytest.mark.parametrize("stage,cls", [("prepare", config.FashionScenesConfig),
                                       ("embed", config.EmbedConfig),
                                       ("train", config.TrainConfig),
                                       ("evaluate", config.EvaluateConfig),
                                       ("plots", config.PlotsConfig)])
def test_the_default_run_spells_out_every_setting(stage: str, cls: type) -> None:
    """So that `dvc params diff` and `dvc exp show` show any change a researcher makes."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    section = params[stage]["fashion_scenes"]
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in section]
    assert not missing, f"{stage}.fashion_scenes lacks {missing}"
    parsed = config.parse(cls, section, f"{stage}.fashion_scenes", check=False)
    assert dataclasses.asdict(parsed).keys() == section.keys()


def test_evaluate_official_declares_every_module_it_can_import(with_official: Path) -> None:
    """The tiny pipeline has no released checkpoint, so this stage's imports are derived from
    the source alone: its entry functions and everything they can import."""
    stage = declared_stages(with_official)["evaluate-official@coco448"]
    glue = {"salgl", "salgl.cli", "salgl.config", "salgl.paths", "salgl.atomic",
            "salgl.errors", "salgl.pipeline"}
    files = module_files(PACKAGE)
    closure = static_closure(glue, "evaluate-official", PACKAGE)
    assert {"salgl.official", "salgl.evaluate", "salgl.figures.stage"} <= closure
    missing = [str(files[m].relative_to(REPO)) for m in sorted(closure)
               if not covered(with_official / files[m].relative_to(REPO), stage.deps)]
    assert not missing, missing


def test_cached_outputs_of_any_dataset_stay_out_of_git() -> None:
    """DVC lists each cached output in a .gitignore beside it but drops the entry when a stage
    fails; the root .gitignore keeps a new dataset's model and data out of `git add -A`
    anyway, while the small outputs kept in git (metrics, tables, curves) stay visible."""
    import subprocess

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0

    for path in ("models/my_tags/model.safetensors", "data/prepared/my_tags/train.tsv",
                 "data/embeddings/my_tags/vectors.npy", "data/predictions/my_tags.npz",
                 "plots/my_tags/figures/pr_curves.png", "plots/my_tags/training_curves.png"):
        assert ignored(path), path
    for path in ("metrics/my_tags.json", "plots/my_tags/eval/per_label_ap.csv",
                 "dvclive/my_tags/metrics.json", "models/my_tags/.gitignore",
                 "data/prepared/.gitignore"):
        assert not ignored(path), path
