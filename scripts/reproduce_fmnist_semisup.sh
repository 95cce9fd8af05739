#!/usr/bin/env bash
# Semi-supervised transfer (FixMatch, pseudo-labels) against fine-tuning on the labels alone on
# Fashion-MNIST (conf/experiment/fmnist_semisup.yaml): 1/5/20 labels per class, 3 seeds, each
# semisup row paired with finetune on the same seeds, and FixMatch with pseudo-labels (rows:
# semisup/full method=fixmatch, semisup/full method=pseudo_label, finetune/full).
#   bash scripts/reproduce_fmnist_semisup.sh [--quick]
fixmatch="semisup/full+method=fixmatch"
pseudo="semisup/full+method=pseudo_label"
export REPORT_ARGS="${REPORT_ARGS:---compare semisup/full:finetune/full --compare $fixmatch:$pseudo}"
exec bash "$(dirname "$0")/reproduce.sh" fmnist_semisup "$@"
