"""Settings under hostile input (issue 20, finding 6): a YAML alias bomb in params.yaml or in
--set is refused before anything walks it, long values are cut in messages, and a refused
command changes nothing on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from tree_snapshot import changes, tree_snapshot

from salgl.errors import SHOWN_CHARS, SalglError, shown
from salgl.yaml_text import EXPANDED_NODE_BUDGET, read_yaml

# Nine levels of nine: 9**9 (387 million) leaves from a few hundred bytes.
ANCHORS = "abcdefghi"
LEVELS = ["[" + ",".join(["x"] * 9) + "]"] + [
    "[" + ",".join([f"*{ANCHORS[k - 1]}"] * 9) + "]" for k in range(1, 9)]
BOMB_KEYS = "".join(f"{ANCHORS[k]}: &{ANCHORS[k]} {LEVELS[k]}\n" for k in range(9))


def bomb_params(folder: Path) -> Path:
    """A params file whose fashion_scenes seed is the bomb (`seed: *i`), as the finding."""
    path = folder / "params.yaml"
    path.write_text("bombs:\n" + "".join(f"  {line}\n" for line in BOMB_KEYS.splitlines())
                    + "prepare:\n  fashion_scenes:\n    seed: *i\n", encoding="utf-8")
    return path


def test_alias_bomb_in_params_is_refused_before_it_is_printed(tmp_path, salgl_main,
                                                              monkeypatch):
    params = bomb_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = tree_snapshot(tmp_path)
    code, out, err = salgl_main("prepare", "fashion_scenes", "--params", str(params),
                                "--out", str(tmp_path / "prepared"))
    assert code == 2 and out == ""
    assert err.strip() == (f"salgl prepare: error: {params}: refused: the YAML expands to "
                           f"more than {EXPANDED_NODE_BUDGET:,} nodes through aliases (an "
                           "alias bomb?); write the values out")
    assert changes(before, tree_snapshot(tmp_path)) == []


def test_alias_bomb_in_set_is_refused(tmp_path, salgl_main, monkeypatch):
    params = tmp_path / "params.yaml"
    params.write_text("prepare:\n  fashion_scenes: {}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    before = tree_snapshot(tmp_path)
    pairs = zip(ANCHORS, LEVELS, strict=True)
    value = "{" + ", ".join(f"{a}: &{a} {level}" for a, level in pairs) + "}"
    code, _, err = salgl_main("prepare", "fashion_scenes", "--params", str(params),
                              "--set", f"seed={value}", "--out", str(tmp_path / "out"))
    assert code == 2
    assert err.startswith("salgl prepare: error: --set 'seed': refused: the YAML expands")
    assert len(err.splitlines()) == 1
    assert changes(before, tree_snapshot(tmp_path)) == []


def test_a_self_referring_or_too_deep_document_is_one_line():
    with pytest.raises(SalglError, match=r"^p.yaml: refused: the YAML refers to itself"):
        read_yaml("a: &a [1, *a]\n", "p.yaml")
    with pytest.raises(SalglError, match=r"^p.yaml: refused: the YAML nests too deeply$"):
        read_yaml("[" * 20000 + "]" * 20000, "p.yaml")


def test_aliases_within_the_budget_still_work():
    data = read_yaml("base: &base {lr: 0.1, epochs: 2}\ntrain: *base\n", "p.yaml")
    assert data["train"] == {"lr": 0.1, "epochs": 2}
    assert read_yaml((Path(__file__).parents[1] / "params.yaml").read_text(encoding="utf-8"),
                     "params.yaml")


def test_a_long_or_unprintable_value_is_cut_in_the_message(tmp_path, salgl_main):
    params = tmp_path / "params.yaml"
    params.write_text("prepare:\n  fashion_scenes: {}\n", encoding="utf-8")
    code, _, err = salgl_main("prepare", "fashion_scenes", "--params", str(params),
                              "--set", "seed=" + "9" * 5000 + "x", "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.splitlines()) == 1
    assert "salgl prepare: error: prepare.fashion_scenes.seed: expected int, got '999" in err
    assert len(err) < 200
    code, _, err = salgl_main("prepare", "fashion_scenes", "--params", str(params),
                              "--set", "\x1b[31mred=1", "--out", str(tmp_path / "o"))
    assert code == 2 and "\x1b" not in err
    assert "prepare.fashion_scenes.'\\x1b[31mred': unknown setting" in err
    assert not (tmp_path / "o").exists()


def test_shown_cuts_and_escapes():
    assert shown("abc") == "'abc'"
    long = shown("y" * 1000)
    assert len(long) == SHOWN_CHARS and long.endswith("...'")
    assert shown("a\nb\x1b") == "'a\\nb\\x1b'"


def test_a_stage_section_of_the_wrong_kind_is_one_line(tmp_path, salgl_main):
    params = tmp_path / "params.yaml"
    params.write_text("prepare: [1, 2]\n", encoding="utf-8")
    code, _, err = salgl_main("prepare", "fashion_scenes", "--params", str(params),
                              "--set", "seed=1", "--out", str(tmp_path / "o"))
    assert code == 2
    assert err.strip() == "salgl prepare: error: prepare: expected a mapping of datasets"


def test_a_pipeline_dataset_missing_stage_groups_is_named_at_once(tmp_path, salgl_main,
                                                                   monkeypatch):
    """DVC reads each stage's group of every dataset under `datasets:` and stops at the first
    missing one; prepare, the first stage, names them all in one run (under DVC, which sets
    DVC_STAGE; by hand the other groups are not needed yet)."""
    monkeypatch.setenv("DVC_STAGE", "prepare@mine")
    params = tmp_path / "params.yaml"
    params.write_text("datasets:\n  mine: tags.csv\nprepare:\n  mine: {format: csv, "
                      "annotations: tags.csv, images: img}\nembed:\n  mine: {}\n",
                      encoding="utf-8")
    before = tree_snapshot(tmp_path)
    code, _, err = salgl_main("prepare", "mine", "--params", str(params),
                              "--out", str(tmp_path / "out"))
    assert code == 2
    assert err.strip() == ("salgl prepare: error: params.yaml: dataset mine is listed under "
                           "datasets: but lacks train.mine, evaluate.mine, plots.mine; DVC's "
                           "stages read each (an empty {} takes every default)")
    assert changes(before, tree_snapshot(tmp_path)) == []


@pytest.mark.parametrize("stage,setting", [("train", "  ema_warmup: true"),
                                           ("train", "  img_size: 64  (16 to 2048)"),
                                           ("embed", "  source: 'cooccurrence'  ('glove' |"),
                                           ("evaluate", "  threshold: 0.5  (0.0 to 1.0)"),
                                           ("plots", "  top_labels: 10  (>= 1)")])
def test_stage_help_lists_every_setting_with_its_default(salgl_main, stage, setting):
    import dataclasses

    from salgl import config
    from salgl.cli import STAGE_SETTINGS

    code, out, _ = salgl_main(stage, "--help")
    assert code == 0 and setting in out
    for field in dataclasses.fields(getattr(config, STAGE_SETTINGS[stage])):
        assert f"\n  {field.name}: " in out
