#!/usr/bin/env bash
# The README's ImageNet linear-probe command, 5 seeds, ImageNet against random weights at the
# native size and 64 px (conf/experiment/fmnist_imagenet_command.yaml), ImageNet paired against
# random at each size and 64 px against the native size (docs/results/fmnist_imagenet_command/).
#   bash scripts/reproduce_fmnist_imagenet_command.sh [--quick]
row="finetune/linear_probe+image_size"
export HF_HUB_OFFLINE=1 REPORT_ARGS="${REPORT_ARGS:---compare $row=64+source=imagenet:$row=64+source=random \
  --compare $row=null+source=imagenet:$row=null+source=random \
  --compare $row=64+source=imagenet:$row=null+source=imagenet}"
exec bash "$(dirname "$0")/reproduce.sh" fmnist_imagenet_command "$@"
