#!/usr/bin/env bash
# Fine-tuning the ImageNet EfficientNet-Lite0 with every label of Fashion-MNIST classes 5-9
# (issue 13): full, LP-FT and partial (conf/experiment/fmnist_imagenet_ft_all.yaml) and scratch
# (fmnist_imagenet_scratch_all), with the linear probes of fmnist_imagenet_all (the same 1,400
# steps), 3 seeds; one report, every mode paired against scratch and the probes
# (docs/results/fmnist_imagenet_ft_all/report/). About 6 hours of one core: the runs resume.
#   bash scripts/reproduce_fmnist_imagenet_ft_all.sh [overrides...]
export HF_HUB_OFFLINE=1
compare=""
for spec in finetune/full:scratch finetune/lp_ft:scratch finetune/partial:scratch \
  finetune/full:finetune/linear_probe finetune/lp_ft:finetune/linear_probe \
  finetune/partial:finetune/linear_probe finetune/lp_ft:finetune/full \
  finetune/full:finetune/partial; do
  compare="$compare --compare $spec"
done
export REPORT_ARGS="${REPORT_ARGS:-$compare}"
exec bash "$(dirname "$0")/reproduce_combined.sh" fmnist_imagenet_ft_all \
  "fmnist_imagenet_ft_all fmnist_imagenet_scratch_all fmnist_imagenet_all" "$@"
