#!/usr/bin/env bash
# The fine-tuning toolbox against plain full fine-tuning on Fashion-MNIST, 5 and 20 labels per
# class, 5 seeds: regularisers (conf/experiment/fmnist_toolbox.yaml), BitFit and LoRA
# (fmnist_toolbox_peft.yaml), WiSE-FT (fmnist_toolbox_wise.yaml); a report for each sweep, then
# one combined report with every row paired against plain full fine-tuning on the same seeds
# (docs/results/fmnist_toolbox/combined/); then every run's tested checkpoint again on two shifted
# copies of the test split (scripts/eval_shifted.sh; fixed in advance: Gaussian noise std 0.2,
# rotation by 20 degrees), reported the same way (docs/results/fmnist_toolbox/shift_*/).
#   bash scripts/reproduce_fmnist_toolbox.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
status=0
for name in fmnist_toolbox fmnist_toolbox_peft fmnist_toolbox_wise; do
  bash "$repo/scripts/reproduce.sh" "$name" "$@" || status=$?
done
out="$root/logs/reproduce/fmnist_toolbox/combined"
python "$repo/scripts/report.py" "$root/logs/reproduce/fmnist_toolbox" \
  "$root/logs/reproduce/fmnist_toolbox_peft" "$root/logs/reproduce/fmnist_toolbox_wise" \
  --out "$out" ${REPORT_ARGS:-}
publish() {  # publish <report dir> <name under docs/results/fmnist_toolbox/>
  if [ "${PUBLISH:-1}" = 1 ]; then
    mkdir -p "$repo/docs/results/fmnist_toolbox/$2"
    for file in report.md summary.csv paired.csv report.json; do
      cp "$1/$file" "$repo/docs/results/fmnist_toolbox/$2/"
    done
  fi
}
publish "$out" combined
sweeps=("$root/logs/reproduce/fmnist_toolbox" "$root/logs/reproduce/fmnist_toolbox_peft"
  "$root/logs/reproduce/fmnist_toolbox_wise")
for spec in "noise0.2 {noise_std:0.2}" "rotate20 {rotate:20}"; do
  name="${spec%% *}"
  shifted="$root/logs/reproduce/fmnist_toolbox_shift_$name"
  bash "$repo/scripts/eval_shifted.sh" "$shifted" "${spec#* }" "${sweeps[@]}" || status=$?
  publish "$shifted/report" "shift_$name"
done
exit "$status"
