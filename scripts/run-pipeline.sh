#!/usr/bin/env bash
# Set up (see setup.sh), then rebuild every result with `dvc repro` (extra arguments pass on).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
exec dvc repro "$@"
