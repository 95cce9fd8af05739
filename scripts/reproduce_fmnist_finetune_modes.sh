#!/usr/bin/env bash
# Fine-tuning variants (linear probe, full, partial, LP-FT, gradual) on Fashion-MNIST (conf/experiment/fmnist_finetune_modes.yaml),
# each paired against full fine-tuning on the same seeds.
#   bash scripts/reproduce_fmnist_finetune_modes.sh [--quick]
# Against scratch (whose runs are fmnist_budgets' at 20 labels per class, same splits and seeds):
#   transferlab report logs/reproduce/fmnist_finetune_modes logs/reproduce/fmnist_budgets \
#     --out logs/reproduce/fmnist_finetune_modes/vs_scratch --compare finetune/lp_ft:scratch ...
compare=""
for mode in linear_probe partial lp_ft gradual; do
  compare="$compare --compare finetune/$mode:finetune/full"
done
export REPORT_ARGS="${REPORT_ARGS:-$compare}"
exec bash "$(dirname "$0")/reproduce.sh" fmnist_finetune_modes "$@"
