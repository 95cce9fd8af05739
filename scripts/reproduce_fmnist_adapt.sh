#!/usr/bin/env bash
# Adaptation without target labels on noisy Fashion-MNIST (conf/experiment/fmnist_adapt.yaml):
# source-only, DANN, Tent, pseudo-labels and the oracle, 5 seeds, each against source-only on the
# same seeds.
#   bash scripts/reproduce_fmnist_adapt.sh [--quick]
export REPORT_ARGS="${REPORT_ARGS:---group-by method --compare tent:source_only --compare dann:source_only --compare pseudo_label:source_only --compare oracle:source_only}"
exec bash "$(dirname "$0")/reproduce.sh" fmnist_adapt "$@"
