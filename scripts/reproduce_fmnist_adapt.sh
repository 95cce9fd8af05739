#!/usr/bin/env bash
# Adaptation without target labels on noisy Fashion-MNIST (conf/experiment/fmnist_adapt.yaml):
# source-only, DANN, Tent, pseudo-labels and the oracle, 5 seeds; then the AdaBN control
# (fmnist_adapt_adabn.yaml: BatchNorm statistics only, on the same sources); one report over
# both, every method against source-only and Tent against AdaBN on the same seeds
# (docs/results/fmnist_adapt/report/).
#   bash scripts/reproduce_fmnist_adapt.sh [--quick]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
compare="--group-by method"
for method in tent dann pseudo_label oracle adabn; do
  compare="$compare --compare $method:source_only"
done
compare="$compare --compare tent:adabn"
status=0
if [ "${1:-}" = "--quick" ]; then
  REPORT_ARGS="${REPORT_ARGS:-$compare}" bash "$repo/scripts/reproduce.sh" fmnist_adapt "$@"
  exit
fi
PUBLISH=0 REPORT_ARGS="--group-by method" bash "$repo/scripts/reproduce.sh" fmnist_adapt "$@" \
  || status=$?
PUBLISH=0 bash "$repo/scripts/reproduce.sh" fmnist_adapt_adabn "$@" || status=$?
out="$root/logs/reproduce/fmnist_adapt/report"
# shellcheck disable=SC2086  # compare / REPORT_ARGS: report options
python "$repo/scripts/report.py" "$root/logs/reproduce/fmnist_adapt" \
  "$root/logs/reproduce/fmnist_adapt_adabn" --out "$out" ${REPORT_ARGS:-$compare}
bash "$repo/scripts/publish_report.sh" "$out" fmnist_adapt/report
exit "$status"
