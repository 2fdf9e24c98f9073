"""DVCLive set-up for a stage: per-epoch metrics that `dvc plots show` and `dvc exp show` read."""

from __future__ import annotations

import os
from pathlib import Path


def open_live(directory: Path, resume: bool = False):
    """A DVCLive logger writing under ``directory`` without touching dvc.yaml or experiments."""
    os.environ.setdefault("DVCLIVE_OPEN", "false")
    from dvclive import Live

    return Live(dir=str(directory), resume=resume, save_dvc_exp=False, dvcyaml=None,
                report=None)
