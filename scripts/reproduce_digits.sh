#!/usr/bin/env bash
# The default digits experiment (digits 0-4 -> 5-9, 5 labels per class), 5 seeds with per-seed
# sources: finetune vs scratch (conf/experiment/digits_transfer.yaml) and the other fine-tuning
# modes (conf/experiment/digits_finetune_modes.yaml), then one report over both sweeps with
# every method paired against scratch; published to docs/results/digits/report/.
#   bash scripts/reproduce_digits.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
status=0
PUBLISH=0 bash "$repo/scripts/reproduce.sh" digits_transfer "$@" || status=$?
PUBLISH=0 bash "$repo/scripts/reproduce.sh" digits_finetune_modes "$@" || status=$?
out="$root/logs/reproduce/digits/report"
compare=()
for mode in full linear_probe partial lp_ft gradual; do
  compare+=(--compare "finetune/$mode:scratch")
done
python "$repo/scripts/report.py" "$root/logs/reproduce/digits_transfer" \
  "$root/logs/reproduce/digits_finetune_modes" --out "$out" "${compare[@]}"
bash "$repo/scripts/publish_report.sh" "$out" digits/report
exit "$status"
