#!/usr/bin/env bash
# Adaptation without target labels on noisy Fashion-MNIST (conf/experiment/fmnist_adapt.yaml):
# source-only, DANN, Tent, pseudo-labels and the oracle, 5 seeds; then the AdaBN control
# (fmnist_adapt_adabn.yaml: BatchNorm statistics only, on the same sources); one report over
# both, every method against source-only and Tent against AdaBN on the same seeds
# (docs/results/fmnist_adapt/report/).
#   bash scripts/reproduce_fmnist_adapt.sh [--quick]
compare="--group-by method"
for method in tent dann pseudo_label oracle; do
  compare="$compare --compare $method:source_only"
done
if [ "${1:-}" = "--quick" ]; then  # the CI-sized sweep alone (no AdaBN twin)
  export REPORT_ARGS="${REPORT_ARGS:-$compare}"
  exec bash "$(dirname "$0")/reproduce.sh" fmnist_adapt "$@"
fi
export REPORT_ARGS="${REPORT_ARGS:-$compare --compare adabn:source_only --compare tent:adabn}"
exec bash "$(dirname "$0")/reproduce_combined.sh" fmnist_adapt "fmnist_adapt fmnist_adapt_adabn" "$@"
