"""Every file and folder that `salgl train` and `salgl import-official` write has the mode a
plain open() or mkdir() would give under the process umask, model files included (safetensors
replaces the file it is given with one of mode 0600; salgl.atomic gives it the umask's)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import LABELS, write_embeddings
from fakes import TINY_TRAIN, make_prepared
from official_fixtures import labels_file, released_config, write_experiment

DRIVER = """
import sys
from salgl.cli import main
train, imported = sys.argv[1].split(" "), sys.argv[2].split(" ")
sys.exit(main(["-q", "train", *train]) or main(["-q", "import-official", *imported]))
"""


def modes(root: Path) -> dict[str, int]:
    """Permission bits of every file and folder under ``root`` (root included)."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_train_and_import_official_follow_the_umask(tmp_path: Path, umask: int) -> None:
    prepared = make_prepared(tmp_path / "prepared", LABELS, n_train=16, n_test=8)
    embeddings = write_embeddings(prepared, tmp_path / "embeddings")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"fashion_scenes": {
        **TINY_TRAIN, "num_scenes": 2, "epochs": 1, "batch_size": 8}}}), encoding="utf-8")
    out = tmp_path / "out"  # made by salgl: everything under it was written by the commands
    train = (f"fashion_scenes --params {params} --prepared {prepared} --embeddings "
             f"{embeddings} --out {out}/model.safetensors --state {out}/state --live "
             f"{out}/live")
    experiment = write_experiment(tmp_path / "exp", released_config())
    imported = f"{experiment} --labels {labels_file(tmp_path / 'labels.txt')} " \
               f"{out}/official/imported.safetensors"
    result = subprocess.run([sys.executable, "-c", DRIVER, train, imported],
                            capture_output=True, text=True, timeout=300,
                            preexec_fn=lambda: os.umask(umask))
    assert result.returncode == 0, result.stderr
    written = modes(out)
    assert {"model.safetensors", "official/imported.safetensors", "state/README.txt",
            "live/metrics.json"} <= written.keys(), sorted(written)
    file_mode, folder_mode = 0o666 & ~umask, 0o777 & ~umask
    for name, mode in written.items():
        want = folder_mode if (out / name).is_dir() else file_mode
        assert mode == want, f"{name}: {oct(mode)}, expected {oct(want)} under {oct(umask)}"
