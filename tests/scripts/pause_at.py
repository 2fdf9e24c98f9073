"""Run the real ``salgl`` command line and stop at the start of a chosen epoch, as a node does
just before it is lost.

Usage: python pause_at.py EPOCH MARKER -- SALGL-ARGS...
The multi-node test starts this script (under torchrun) on the node it will lose only. When
this process reaches epoch EPOCH (0-based), every earlier epoch's resume state is saved (rank
0 saves it before the barrier every process has passed). It then writes MARKER, a JSON object
with its own process id and its parent's (the torchrun agent of its node), and sleeps; the
test kills both. The other node's process runs on and waits for this one in the epoch's first
collective.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def install(epoch: int, marker: Path) -> None:
    from salgl import train

    train_epoch = train.Trainer.train_epoch

    def pausing(self, current: int):
        if current == epoch:
            draft = marker.with_name(marker.name + ".draft")
            draft.write_text(json.dumps({"pid": os.getpid(), "agent": os.getppid()}),
                             encoding="utf-8")
            draft.replace(marker)
            time.sleep(3600)
        return train_epoch(self, current)

    train.Trainer.train_epoch = pausing


if __name__ == "__main__":
    epoch, marker, separator, *salgl_args = sys.argv[1:]
    assert separator == "--", __doc__
    install(int(epoch), Path(marker))
    from salgl.cli import main

    sys.exit(main(salgl_args))
