#!/usr/bin/env bash
# The fine-tuning toolbox against plain full fine-tuning on Fashion-MNIST, 5 and 20 labels per
# class, 5 seeds: regularisers (conf/experiment/fmnist_toolbox.yaml), BitFit and LoRA
# (fmnist_toolbox_peft.yaml), WiSE-FT (fmnist_toolbox_wise.yaml); a report for each sweep; the
# uniform and greedy soups of each split's runs (scripts/soups_per_split.sh); then one combined report with every row paired against plain full fine-tuning on the same seeds
# (docs/results/fmnist_toolbox/combined/); then every run's tested checkpoint again on two shifted
# copies of the test split (scripts/eval_shifted.sh; fixed in advance: Gaussian noise std 0.2,
# rotation by 20 degrees), reported the same way (docs/results/fmnist_toolbox/shift_*/).
#   bash scripts/reproduce_fmnist_toolbox.sh
# TOOLBOX names the three sweeps' experiment prefix and the docs/results/ folder (default
# fmnist_toolbox; fmnist_toolbox_all: every label instead of 5 and 20;
# scripts/reproduce_fmnist_imagenet_toolbox.sh sets fmnist_imagenet_toolbox).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
toolbox="${TOOLBOX:-fmnist_toolbox}"
status=0
for name in "$toolbox" "${toolbox}_peft" "${toolbox}_wise"; do
  bash "$repo/scripts/reproduce.sh" "$name" "$@" || status=$?
done
sweeps=("$root/logs/reproduce/$toolbox" "$root/logs/reproduce/${toolbox}_peft"
  "$root/logs/reproduce/${toolbox}_wise")
# uniform and greedy soups of each split's runs (every variant above at one budget and seed)
soups="$root/logs/reproduce/${toolbox}_soups"
bash "$repo/scripts/soups_per_split.sh" "$soups" "${sweeps[@]}" || status=$?
out="$root/logs/reproduce/$toolbox/combined"
# row names as the combined report writes them ("+" for a space): the config keys that differ
plain="regularizer=none+wise_alpha=null"
base="finetune/full+peft=none+$plain"
runs_compare=""  # every variant against the baseline; the shifted tests have no soups
for row in peft=none+regularizer=l2sp+wise_alpha=null peft=none+regularizer=delta+wise_alpha=null \
  peft=none+regularizer=bss+wise_alpha=null peft=none+regularizer=cotuning+wise_alpha=null \
  "peft=bitfit+$plain" "alpha=8+peft=lora+rank=4+$plain" "alpha=32+peft=lora+rank=16+$plain" \
  peft=none+regularizer=none+wise_alpha=0.5 peft=none+regularizer=none+wise_alpha=auto; do
  runs_compare="$runs_compare --compare finetune/full+$row:$base"
done
compare="--compare soup/greedy:$base --compare soup/uniform:$base$runs_compare"
# shellcheck disable=SC2086  # compare / REPORT_ARGS: report options
python "$repo/scripts/report.py" "${sweeps[@]}" "$soups" --task all --out "$out" \
  ${REPORT_ARGS:-$compare}
publish() {  # publish <report dir> <name under docs/results/$toolbox/>
  bash "$repo/scripts/publish_report.sh" "$1" "$toolbox/$2"
}
publish "$out" combined
for spec in "noise0.2 {noise_std:0.2}" "rotate20 {rotate:20}"; do
  name="${spec%% *}"
  shifted="$root/logs/reproduce/${toolbox}_shift_$name"
  REPORT_ARGS="${REPORT_ARGS:-$runs_compare}" \
    bash "$repo/scripts/eval_shifted.sh" "$shifted" "${spec#* }" "${sweeps[@]}" || status=$?
  publish "$shifted/report" "shift_$name"
done
exit "$status"
