#!/usr/bin/env bash
# Set up (see setup.sh; with chromium), then run the test suite (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
SALGL_SETUP_BROWSER=1 bash scripts/setup.sh  # chromium too, for the offline plots page test
# shellcheck disable=SC1091
source .venv/bin/activate
# Two or more test processes (pytest-xdist), split by file: many tests spend their time
# starting Python processes, which a second core overlaps. SALGL_TEST_WORKERS=0 runs serially.
exec python -m pytest -n "${SALGL_TEST_WORKERS:-auto}" --maxprocesses 4 --dist loadfile "$@"
