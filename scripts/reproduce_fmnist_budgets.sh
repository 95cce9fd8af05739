#!/usr/bin/env bash
# Transfer against scratch across label budgets on Fashion-MNIST (conf/experiment/fmnist_budgets.yaml).
#   bash scripts/reproduce_fmnist_budgets.sh [--quick]
exec bash "$(dirname "$0")/reproduce.sh" fmnist_budgets "$@"
