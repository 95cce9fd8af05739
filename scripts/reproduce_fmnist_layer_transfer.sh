#!/usr/bin/env bash
# Layer transfer (AnB / BnB, frozen and fine-tuned, k = 1..4 stages) on Fashion-MNIST (conf/experiment/fmnist_layer_transfer.yaml).
#   bash scripts/reproduce_fmnist_layer_transfer.sh [--quick]
# paired on the same seeds: AnB - BnB, frozen and fine-tuned; AnB fine-tuned - AnB frozen
anb="0,1,2,3,4"
bnb="5,6,7,8,9"
compare="--compare finetune/partial/$anb:finetune/partial/$bnb --compare finetune/full/$anb:finetune/full/$bnb"
compare="$compare --compare finetune/full/$anb:finetune/partial/$anb"
export REPORT_ARGS="${REPORT_ARGS:---group-by strategy,mode,source.classes,transfer_stages --budget-key transfer_stages --variant-key strategy.mode,source.classes $compare}"
exec bash "$(dirname "$0")/reproduce.sh" fmnist_layer_transfer "$@"
