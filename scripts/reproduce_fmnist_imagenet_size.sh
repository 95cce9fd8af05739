#!/usr/bin/env bash
# 96 px against 64 px for the ImageNet EfficientNet-Lite0 on Fashion-MNIST, chosen on validation
# (conf/experiment/fmnist_imagenet_size.yaml; docs/imagenet.md). Runs the 96 px sweep, then
# reports best validation accuracy (the choice) and test accuracy (beside it) with the paired
# 96 - 64 px differences, reading the 64 px arm from fmnist_imagenet's sweep (run
# scripts/reproduce_fmnist_imagenet.sh first, with the same threads). Published to
# docs/results/fmnist_imagenet_size/ (PUBLISH=0 skips that).
#   bash scripts/reproduce_fmnist_imagenet_size.sh [extra hydra overrides...]
# Both arms must share every setting but the size: run it as the ImageNet sweep ran (LANES=2 ran
# it on one thread: pass perf.num_threads=1 here then).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
export HF_HUB_OFFLINE=1
status=0
PUBLISH=0 bash "$repo/scripts/reproduce.sh" fmnist_imagenet_size "$@" || status=$?
compare=()
for mode in linear_probe lp_ft; do
  compare+=(--compare "finetune/${mode}+image_size=96:finetune/${mode}+image_size=64")
done
for metric in val/acc_best test/acc; do
  out="$root/logs/reproduce/fmnist_imagenet_size/combined-${metric//\//_}"
  python "$repo/scripts/report.py" "$root/logs/reproduce/fmnist_imagenet" \
    "$root/logs/reproduce/fmnist_imagenet_size" --out "$out" --metric "$metric" "${compare[@]}"
  bash "$repo/scripts/publish_report.sh" "$out" "fmnist_imagenet_size/combined-${metric//\//_}"
done
exit "$status"
