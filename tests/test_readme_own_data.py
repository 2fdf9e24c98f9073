"""The README's own-data walk-through ("Train on your own images"), run exactly as printed in a
copy of this repository: its tag table's rows, its params.yaml entries, its three commands.
Before the full entries, the same dataset with three stage groups left out is refused by one
`dvc repro`, which names all three."""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from pathlib import Path

import pytest
import yaml

from dvc_repo import REPO, copy_repository, run
from own_fixtures import draw, label_sets


def walk_through() -> tuple[str, str, list[str]]:
    """The walk-through's three code blocks: the tag table, the params entries, the commands."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Train on your own images"):]
    section = section[:section.index("**For real photos**")]
    blocks = re.findall(r"\n( *)```(\w+)\n(.*?)\n\1```", section, flags=re.S)
    assert [kind for _, kind, _ in blocks] == ["text", "yaml", "bash"], blocks
    table, entries, commands = (textwrap.dedent(body) for _, _, body in blocks)
    return table, entries, [line for line in commands.splitlines() if line.strip()]


def add_entries(repo: Path, entries: dict) -> None:
    """What step 2 says: each entry under the params.yaml group of the same name."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for group, items in entries.items():
        params.setdefault(group, {}).update(items)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def write_photos(raw: Path, table: str, n: int = 40) -> list[str]:
    """The README's rows first, then generated ones with the same tags, and a photo for each
    (JPEG, as the entries' `extension` says); returns the tags in first-seen order."""
    rows = table.splitlines()
    header, given = rows[0], [row.split(",") for row in rows[1:]]
    tags = list(dict.fromkeys(t for _, cell in given for t in cell.split(" ")))
    lines = [header, *rows[1:]]
    for i in range(len(given), n):
        chosen = label_sets(n, len(tags), 11)[i]
        lines.append(f"IMG_{i + 1:04d}," + " ".join(tags[k] for k in chosen))
    for row in lines[1:]:
        name, cell = row.split(",")
        draw(raw / "images" / f"{name}.jpg", [tags.index(t) for t in cell.split(" ")],
             int(name[4:]))
    (raw / "tags.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tags


@pytest.mark.slow
def test_the_readme_own_data_walk_through(tmp_path: Path) -> None:
    table, printed, commands = walk_through()
    entries = yaml.safe_load(printed)
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repository(repo)
    tags = write_photos(repo / "data" / "raw" / "my_tags", table)
    run(["git", "init", "-q"], repo)

    # Three groups forgotten: one run, all three named, before any stage writes anything.
    add_entries(repo, {k: v for k, v in entries.items()
                       if k not in ("embed", "evaluate", "plots")})
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "my_tags, half added"], repo)
    refused = run(shlex.split(commands[0], comments=True), repo, check=False)
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "lacks embed.my_tags, evaluate.my_tags, plots.my_tags" in said, said
    assert not (repo / "data" / "prepared" / "my_tags").exists()

    add_entries(repo, entries)
    run(["git", "commit", "-qam", "my_tags"], repo)
    ran = [run(shlex.split(line, comments=True), repo) for line in commands]
    stages = set(re.findall(r"Running stage '([^']+)'", ran[0].stdout))
    assert stages == {f"{stage}@my_tags" for stage in ("prepare", "embed", "train", "evaluate",
                                                       "plots")}  # my_tags alone
    found = re.search(r"my_tags: 5 labels: (.*)", ran[0].stdout + ran[0].stderr)
    assert found and sorted(found.group(1).split(", ")) == sorted(tags)  # prepare names them
    shown = ran[1].stdout
    for column in ("mAP", "CF1", "OF1", "val_mAP"):
        assert column in shown.splitlines()[0], shown
    assert max(len(line) for line in shown.splitlines()) <= 120
    labelled = [json.loads(line) for line in ran[2].stdout.splitlines()]
    assert len(labelled) == 40
    assert all(1 <= len(r["labels"]) <= 3 and set(r["scores"]) == set(tags) for r in labelled)
    assert json.loads((repo / "metrics" / "my_tags_all.json").read_text())["selected_on"] == "val"
