#!/usr/bin/env bash
# The PEFT follow-up on the ImageNet source (conf/experiment/fmnist_imagenet_toolbox_peft_lr1.yaml:
# BitFit and LoRA r4/r16 with their weights at the head's learning rate, 0.01), paired against
# plain full fine-tuning (fmnist_imagenet_toolbox with strategy.regularizer.name=none) on the
# same 5/20-label splits and seeds 0-4; 40 runs of ~1.5-2 min each on one thread, resumable.
# Sweeps in $TRANSFERLAB_ROOT/logs/reproduce/fmnist_imagenet_toolbox_peft_lr1/{plain,peft}, one
# report published to docs/results/fmnist_imagenet_toolbox/peft_lr1/, then every run tested on
# noisy (std 0.2) and rotated (20 degrees) test images: peft_lr1_shift_*/; the soups of each
# split's runs: peft_lr1_soups/ (PUBLISH=0: no copies).
#   bash scripts/reproduce_fmnist_imagenet_toolbox_peft_lr1.sh [extra hydra overrides...]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
export TRANSFERLAB_ROOT="$root" HF_HUB_OFFLINE=1
out="$root/logs/reproduce/fmnist_imagenet_toolbox_peft_lr1"
common=(resume=true print_config=false trainer.enable_progress_bar=false)
start=$(date +%s)
status=0
python "$repo/train.py" -m experiment=fmnist_imagenet_toolbox strategy.regularizer.name=none \
  "hydra.sweep.dir=$out/plain" "${common[@]}" "$@" || status=$?
python "$repo/train.py" -m experiment=fmnist_imagenet_toolbox_peft_lr1 \
  "hydra.sweep.dir=$out/peft" "${common[@]}" "$@" || status=$?
base="finetune/full+backbone_lr_ratio=1"
plain="finetune/full+backbone_lr_ratio=0.1+peft=none"
compare="--compare $base+alpha=32+peft=lora+rank=16:$plain"
compare="$compare --compare $base+alpha=8+peft=lora+rank=4:$plain --compare $base+peft=bitfit:$plain"
# shellcheck disable=SC2086  # compare: the report's --compare options
python "$repo/scripts/report.py" "$out/plain" "$out/peft" --out "$out/report" $compare \
  || status=$?
bash "$repo/scripts/publish_report.sh" "$out/report" fmnist_imagenet_toolbox/peft_lr1 || status=$?
# the uniform and greedy soups of each (budget, seed) split's four runs, paired against both
# plain fine-tuning and LoRA r16 (the soup recipe is the toolbox's; added after the sweep)
bash "$repo/scripts/soups_per_split.sh" "$out/soups" "$out/plain" "$out/peft" || status=$?
lora="$base+alpha=32+peft=lora+rank=16"
soups="--compare soup/greedy:$plain --compare soup/uniform:$plain"
soups="$soups --compare soup/greedy:$lora --compare soup/uniform:$lora --compare $lora:$plain"
# shellcheck disable=SC2086  # soups: the report's --compare options
python "$repo/scripts/report.py" "$out/plain" "$out/peft" "$out/soups" --task all \
  --out "$out/with_soups" $soups || status=$?
bash "$repo/scripts/publish_report.sh" "$out/with_soups" fmnist_imagenet_toolbox/peft_lr1_soups \
  || status=$?
# every run's tested checkpoint again on shifted test images (fixed in advance, as the toolbox's)
for spec in "noise0.2 {noise_std:0.2}" "rotate20 {rotate:20}"; do
  shifted="$out/shift_${spec%% *}"
  REPORT_ARGS="$compare" bash "$repo/scripts/eval_shifted.sh" "$shifted" "${spec#* }" \
    "$out/plain" "$out/peft" || status=$?
  bash "$repo/scripts/publish_report.sh" "$shifted/report" \
    "fmnist_imagenet_toolbox/peft_lr1_shift_${spec%% *}" || status=$?
done
echo "reproduce fmnist_imagenet_toolbox_peft_lr1: $(($(date +%s) - start)) s wall time"
exit "$status"
