#!/usr/bin/env bash
# Sourced by the fmnist_imagenet reproduce scripts: the paired comparisons of the four transfer
# modes of the ImageNet EfficientNet-Lite0 (linear probe, full, LP-FT, partial) with each other
# and with scratch, as `transferlab report --compare` options.
#   source scripts/imagenet_mode_comparisons.sh
#   mode_comparisons <probe row> <scratch row>   # prints one option or spec per line
mode_comparisons() {
  local probe="${1:?usage: mode_comparisons <probe row> <scratch row>}" scratch="${2:?}" spec
  for spec in "finetune/full:$scratch" "finetune/lp_ft:$scratch" "finetune/partial:$scratch" \
    "$probe:$scratch" "finetune/full:$probe" "finetune/lp_ft:$probe" "finetune/partial:$probe" \
    finetune/lp_ft:finetune/full finetune/full:finetune/partial; do
    printf -- '--compare\n%s\n' "$spec"
  done
}
