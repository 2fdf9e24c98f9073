"""Where salgl's messages go: one handler on the ``salgl`` logger, writing to stderr. The
command line and the ablation's lane processes both set it up here."""

from __future__ import annotations

import logging
import sys


def configure_logging(quiet: bool) -> None:
    """Our messages on stderr; other libraries' loggers are left as they are (the root
    logger is not touched, so their INFO chatter stays off)."""
    logger = logging.getLogger("salgl")
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    if not any(getattr(h, "salgl", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.salgl = True
        logger.addHandler(handler)
