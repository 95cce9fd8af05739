#!/usr/bin/env bash
# The regularisers on the ImageNet source under shift and in soups
# (conf/experiment/fmnist_imagenet_toolbox_regularisers.yaml: plain full fine-tuning, L2-SP, BSS,
# Co-Tuning; 5 and 20 labels per class, seeds 0-4; 40 runs of ~80 s on one thread, resumable).
# The sweep runs in two halves, $out/lpc5 and $out/lpc20 (LANES=2: side by side, one thread
# each), then: one report paired against plain fine-tuning (docs/results/
# fmnist_imagenet_toolbox/regularisers/), the uniform and greedy soups of each (budget, seed)
# split's four runs (regularisers_soups/), and every run's tested checkpoint on noisy (std 0.2)
# and rotated (20 degrees) test images (regularisers_shift_*/). PUBLISH=0: no copies.
#   bash scripts/reproduce_fmnist_imagenet_toolbox_regularisers.sh [extra hydra overrides...]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
export TRANSFERLAB_ROOT="$root" HF_HUB_OFFLINE=1
out="$root/logs/reproduce/fmnist_imagenet_toolbox_regularisers"
common=(experiment=fmnist_imagenet_toolbox_regularisers resume=true print_config=false
  trainer.enable_progress_bar=false)
start=$(date +%s)
status=0
half() {  # half <labels per class> [overrides...]: one budget's sweep
  local lpc="$1"
  shift
  python "$repo/train.py" -m "${common[@]}" "data.labels_per_class=$lpc" \
    "hydra.sweep.dir=$out/lpc$lpc" "$@"
}
if [ "${LANES:-1}" = 2 ]; then
  half 5 perf.num_threads=1 "$@" &
  first=$!
  half 20 perf.num_threads=1 "$@" || status=$?
  wait "$first" || status=$?
else
  half 5 "$@" || status=$?
  half 20 "$@" || status=$?
fi
plain="finetune/full+regularizer=none"
compare=""
for name in l2sp bss cotuning; do
  compare="$compare --compare finetune/full+regularizer=$name:$plain"
done
# shellcheck disable=SC2086  # compare: the report's --compare options
python "$repo/scripts/report.py" "$out/lpc5" "$out/lpc20" --out "$out/report" $compare \
  || status=$?
bash "$repo/scripts/publish_report.sh" "$out/report" fmnist_imagenet_toolbox/regularisers \
  || status=$?
# the uniform and greedy soups of each (budget, seed) split's four runs (the toolbox's recipe)
bash "$repo/scripts/soups_per_split.sh" "$out/soups" "$out/lpc5" "$out/lpc20" || status=$?
soups="--compare soup/greedy:$plain --compare soup/uniform:$plain"
# shellcheck disable=SC2086  # soups, compare: the report's --compare options
python "$repo/scripts/report.py" "$out/lpc5" "$out/lpc20" "$out/soups" --task all \
  --out "$out/with_soups" $soups $compare || status=$?
bash "$repo/scripts/publish_report.sh" "$out/with_soups" \
  fmnist_imagenet_toolbox/regularisers_soups || status=$?
# every run's tested checkpoint again on shifted test images (fixed in advance, the toolbox's)
for spec in "noise0.2 {noise_std:0.2}" "rotate20 {rotate:20}"; do
  shifted="$out/shift_${spec%% *}"
  REPORT_ARGS="$compare" bash "$repo/scripts/eval_shifted.sh" "$shifted" "${spec#* }" \
    "$out/lpc5" "$out/lpc20" || status=$?
  bash "$repo/scripts/publish_report.sh" "$shifted/report" \
    "fmnist_imagenet_toolbox/regularisers_shift_${spec%% *}" || status=$?
done
echo "reproduce fmnist_imagenet_toolbox_regularisers: $(($(date +%s) - start)) s wall time"
exit "$status"
