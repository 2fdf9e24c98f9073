#!/usr/bin/env bash
# Set up (see setup.sh), then run the test suite (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
exec python -m pytest "$@"
