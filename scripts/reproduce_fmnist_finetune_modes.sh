#!/usr/bin/env bash
# Fine-tuning variants (linear probe, full, partial, LP-FT, gradual) on Fashion-MNIST (conf/experiment/fmnist_finetune_modes.yaml).
#   bash scripts/reproduce_fmnist_finetune_modes.sh [--quick]
exec bash "$(dirname "$0")/reproduce.sh" fmnist_finetune_modes "$@"
