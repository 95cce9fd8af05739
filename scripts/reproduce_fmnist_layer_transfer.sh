#!/usr/bin/env bash
# Layer transfer (AnB / BnB, frozen and fine-tuned, k = 1..4 stages) on Fashion-MNIST (conf/experiment/fmnist_layer_transfer.yaml).
#   bash scripts/reproduce_fmnist_layer_transfer.sh [--quick]
exec bash "$(dirname "$0")/reproduce.sh" fmnist_layer_transfer "$@"
