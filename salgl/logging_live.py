"""DVCLive set-up for a stage: per-epoch metrics that `dvc plots show` and `dvc exp show` read.

DVCLive clears its folder when a run starts, and a killed run would leave rows that the
resume state does not know about. So the trainer logs into a staging folder beside its
resume state and copies it, file by file and atomically, onto the published folder after
every finished epoch: an interrupted run leaves the last published curves in place (never
none), and a resumed run first cuts the staged history back to its last saved epoch, so no
row is duplicated or missing. Only what salgl writes into a live folder (the "live" kind of
salgl.output_rules.LEGACY_CONTENTS) is ever copied or removed, and no link is followed.
"""

from __future__ import annotations

import csv
import os
import shutil
import stat
from pathlib import Path

from salgl.atomic import atomic_path, write_text
from salgl.output_rules import LEGACY_CONTENTS, check_dir_output, remove_own

KIND = "live"


def _own_files(folder: Path) -> set[Path]:
    """The regular files salgl writes into a live folder, relative to it (links and anything
    salgl does not write there are left out)."""
    found = set()
    for top, _, files in os.walk(folder):
        for name in files:
            path = Path(top) / name
            rel = path.relative_to(folder)
            if (stat.S_ISREG(os.lstat(path).st_mode)
                    and LEGACY_CONTENTS[KIND].fullmatch(rel.as_posix())):
                found.add(rel)
    return found


def open_live(directory: Path, epochs_done: int = 0, published: Path | None = None):
    """A DVCLive logger writing under ``directory`` without touching dvc.yaml or experiments.

    Steps are epoch numbers, counted from 1 as the log and the figures count them (the
    trainer sets ``live.step``). With ``epochs_done`` > 0 (a resumed run) the staged history
    keeps only the epochs up to it (taken from ``published`` when nothing is staged).
    """
    os.environ.setdefault("DVCLIVE_OPEN", "false")
    from dvclive import Live

    if published is not None:
        check_dir_output(published, KIND)  # the command line checked it before any work
    resume = epochs_done > 0
    if resume:
        if not directory.is_dir() and published is not None and published.is_dir():
            for rel in sorted(_own_files(published)):
                (directory / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(published / rel, directory / rel)
        truncate_history(directory, epochs_done + 1)
    return Live(dir=str(directory), resume=resume, save_dvc_exp=False, dvcyaml=None,
                report=None)


def truncate_history(directory: Path, keep_before: int) -> None:
    """Drop every logged row whose step is ``keep_before`` or later."""
    for path in sorted(directory / rel for rel in _own_files(directory) if rel.suffix == ".tsv"):
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        column = rows[0].index("step")
        kept = [rows[0]] + [row for row in rows[1:] if int(row[column]) < keep_before]
        write_text(path, "".join("\t".join(row) + "\n" for row in kept))


def publish(staging: Path, published: Path) -> None:
    """Make salgl's files in ``published`` a copy of those in ``staging``, replacing each
    file atomically; files salgl wrote there before and no longer logs are removed,
    nothing else."""
    staged = _own_files(staging)
    for rel in sorted(staged):
        with atomic_path(published / rel) as tmp:
            shutil.copyfile(staging / rel, tmp)
    remove_own(published, KIND, keep={rel.as_posix() for rel in staged})
