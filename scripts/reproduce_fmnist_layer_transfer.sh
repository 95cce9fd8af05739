#!/usr/bin/env bash
# Layer transfer (AnB / BnB, frozen and fine-tuned, k = 1..4 stages) on Fashion-MNIST (conf/experiment/fmnist_layer_transfer.yaml).
#   bash scripts/reproduce_fmnist_layer_transfer.sh [--quick]
export REPORT_ARGS="${REPORT_ARGS:---group-by strategy,mode,source.classes,transfer_stages --budget-key transfer_stages --variant-key strategy.mode,source.classes}"
exec bash "$(dirname "$0")/reproduce.sh" fmnist_layer_transfer "$@"
