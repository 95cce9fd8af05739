#!/usr/bin/env bash
# The PEFT follow-up on the ImageNet source (conf/experiment/fmnist_imagenet_toolbox_peft_lr1.yaml:
# BitFit and LoRA r4/r16 with their weights at the head's learning rate, 0.01), paired against
# plain full fine-tuning (fmnist_imagenet_toolbox with strategy.regularizer.name=none) on the
# same 5/20-label splits and seeds 0-4; 40 runs of ~1.5-2 min each on one thread, resumable.
# Sweeps in $TRANSFERLAB_ROOT/logs/reproduce/fmnist_imagenet_toolbox_peft_lr1/{plain,peft}, one
# report published to docs/results/fmnist_imagenet_toolbox/peft_lr1/ (PUBLISH=0 skips that).
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
base="finetune/full+backbone_lr_ratio=0.1+peft=none"
python "$repo/scripts/report.py" "$out/plain" "$out/peft" --out "$out/report" \
  --compare "finetune/full+backbone_lr_ratio=1+alpha=32+peft=lora+rank=16:$base" \
  --compare "finetune/full+backbone_lr_ratio=1+alpha=8+peft=lora+rank=4:$base" \
  --compare "finetune/full+backbone_lr_ratio=1+peft=bitfit:$base" || status=$?
bash "$repo/scripts/publish_report.sh" "$out/report" fmnist_imagenet_toolbox/peft_lr1 || status=$?
echo "reproduce fmnist_imagenet_toolbox_peft_lr1: $(($(date +%s) - start)) s wall time"
exit "$status"
