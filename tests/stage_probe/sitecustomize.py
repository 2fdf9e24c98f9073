"""Loaded at start-up by every Python process of a test that puts this folder on PYTHONPATH
and sets SALGL_STAGE_PROBE to a log file: each process appends one JSON line at exit with its
command line, the files of the modules it imported, and the files it opened for reading.
tests/stage_deps.py compares that with each DVC stage's declared dependencies."""

import atexit
import json
import os
import sys

_LOG = os.environ.get("SALGL_STAGE_PROBE")

if _LOG:
    _PID = os.getpid()
    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    _opened: set[str] = set()

    def _audit(event: str, args: tuple) -> None:
        if event != "open" or not isinstance(args[0], str):
            return
        path, mode, flags = args
        writing = (any(c in mode for c in "wax+") if isinstance(mode, str)
                   else bool((flags or 0) & _WRITE_FLAGS))
        if not writing:
            _opened.add(os.path.abspath(path))

    sys.addaudithook(_audit)

    def _write() -> None:
        if os.getpid() != _PID:  # a forked data-loader worker
            return
        modules = sorted({os.path.abspath(m.__file__) for m in list(sys.modules.values())
                          if isinstance(getattr(m, "__file__", None), str)})
        record = {"argv": sys.argv, "cwd": os.getcwd(), "modules": modules,
                  "opened": sorted(_opened)}
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    atexit.register(_write)
