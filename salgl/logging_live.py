"""DVCLive set-up for a stage: per-epoch metrics that `dvc plots show` and `dvc exp show` read.

DVCLive clears its folder when a run starts, and a killed run would leave rows that the
resume state does not know about. So the trainer logs into a staging folder beside its
resume state and copies it, file by file and atomically, onto the published folder after
every finished epoch: an interrupted run leaves the last published curves in place (never
none), and a resumed run first cuts the staged history back to its last saved epoch, so no
row is duplicated or missing.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

from salgl.atomic import atomic_path, write_text

_HISTORY_GLOB = "plots/metrics/**/*.tsv"


def open_live(directory: Path, resume_step: int = 0, published: Path | None = None):
    """A DVCLive logger writing under ``directory`` without touching dvc.yaml or experiments.

    With ``resume_step`` > 0 the staged history keeps only steps before it (taken from
    ``published`` when nothing is staged) and logging continues at that step.
    """
    os.environ.setdefault("DVCLIVE_OPEN", "false")
    from dvclive import Live

    resume = resume_step > 0
    if resume:
        if not directory.is_dir() and published is not None and published.is_dir():
            shutil.copytree(published, directory)
        truncate_history(directory, resume_step)
    live = Live(dir=str(directory), resume=resume, save_dvc_exp=False, dvcyaml=None,
                report=None)
    if resume:
        live.step = resume_step
    return live


def truncate_history(directory: Path, keep_before: int) -> None:
    """Drop every logged row whose step is ``keep_before`` or later."""
    for path in sorted(directory.glob(_HISTORY_GLOB)):
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        column = rows[0].index("step")
        kept = [rows[0]] + [row for row in rows[1:] if int(row[column]) < keep_before]
        write_text(path, "".join("\t".join(row) + "\n" for row in kept))


def publish(staging: Path, published: Path) -> None:
    """Make ``published`` a copy of ``staging``, replacing each file atomically."""
    staged = {p.relative_to(staging) for p in staging.rglob("*") if p.is_file()}
    for rel in sorted(staged):
        with atomic_path(published / rel) as tmp:
            shutil.copyfile(staging / rel, tmp)
    if published.is_dir():
        for path in sorted(published.rglob("*"), reverse=True):
            rel = path.relative_to(published)
            if path.is_file() and rel not in staged:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
