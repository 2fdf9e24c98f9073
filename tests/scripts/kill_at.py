"""Run the real ``salgl`` command line and SIGKILL this very process at a chosen point.

Usage: python kill_at.py POINT EPOCH -- SALGL-ARGS...
POINT is one of
  mid_epoch   after the first optimiser step of epoch EPOCH (0-based);
  after_log   right after epoch EPOCH's curves were logged, before its state is saved;
  after_save  right after epoch EPOCH's resume state was saved.
The fault tests use it to leave exactly what a power cut would leave.
"""

from __future__ import annotations

import os
import signal
import sys


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str, epoch: int) -> None:
    import dvclive
    from salgl import train

    if point == "after_save":
        save_state = train.Trainer.save_state

        def saving_then_dying(self, done: int) -> None:
            save_state(self, done)
            if done == epoch:
                die()

        train.Trainer.save_state = saving_then_dying
    elif point == "after_log":
        next_step = dvclive.Live.next_step

        def logging_then_dying(self) -> None:
            next_step(self)
            if self.step == epoch + 1:
                die()

        dvclive.Live.next_step = logging_then_dying
    elif point == "mid_epoch":
        train_epoch = train.Trainer.train_epoch

        def dying_after_one_step(self, current: int):
            if current == epoch:
                step = self.scheduler.step

                def step_then_die(*args, **kwargs):
                    step(*args, **kwargs)
                    die()

                self.scheduler.step = step_then_die
            return train_epoch(self, current)

        train.Trainer.train_epoch = dying_after_one_step
    else:
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    point, epoch, separator, *salgl_args = sys.argv[1:]
    assert separator == "--", __doc__
    install(point, int(epoch))
    from salgl.cli import main

    sys.exit(main(salgl_args))
