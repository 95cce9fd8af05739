#!/usr/bin/env bash
# Co-Tuning against LoRA r16 at the head's learning rate on the ImageNet source, paired on one
# machine: the regularisers' sweep (scripts/reproduce_fmnist_imagenet_toolbox_regularisers.sh,
# whose finished runs are skipped) and conf/experiment/fmnist_imagenet_toolbox_lora16_lr1.yaml
# (10 runs of ~90 s on one thread, resumable) into the same folder, then one paired report:
# Co-Tuning and LoRA r16 against plain full fine-tuning and against each other
# (docs/results/fmnist_imagenet_toolbox/cotuning_vs_lora/; PUBLISH=0: no copies).
#   bash scripts/reproduce_fmnist_imagenet_cotuning_vs_lora.sh [extra hydra overrides...]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
export TRANSFERLAB_ROOT="$root" HF_HUB_OFFLINE=1
out="$root/logs/reproduce/fmnist_imagenet_toolbox_regularisers"
common=(resume=true print_config=false trainer.enable_progress_bar=false)
start=$(date +%s)
status=0
for lpc in 5 20; do
  python "$repo/train.py" -m experiment=fmnist_imagenet_toolbox_regularisers "${common[@]}" \
    "data.labels_per_class=$lpc" "hydra.sweep.dir=$out/lpc$lpc" "$@" || status=$?
done
python "$repo/train.py" -m experiment=fmnist_imagenet_toolbox_lora16_lr1 "${common[@]}" \
  "hydra.sweep.dir=$out/lora16_lr1" "$@" || status=$?
plain="finetune/full+backbone_lr_ratio=0.1+peft=none+regularizer=none"
cotuning="finetune/full+backbone_lr_ratio=0.1+peft=none+regularizer=cotuning"
lora="finetune/full+backbone_lr_ratio=1+peft=lora+regularizer=none"
compare="--compare $cotuning:$plain --compare $lora:$plain --compare $lora:$cotuning"
# shellcheck disable=SC2086  # compare: the report's --compare options
python "$repo/scripts/report.py" "$out/lpc5" "$out/lpc20" "$out/lora16_lr1" \
  --out "$out/cotuning_vs_lora" $compare || status=$?
bash "$repo/scripts/publish_report.sh" "$out/cotuning_vs_lora" \
  fmnist_imagenet_toolbox/cotuning_vs_lora || status=$?
echo "reproduce fmnist_imagenet_cotuning_vs_lora: $(($(date +%s) - start)) s wall time"
exit "$status"
