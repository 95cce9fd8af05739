#!/usr/bin/env bash
# Zero-shot methods on Fashion-MNIST (conf/experiment/fmnist_zeroshot.yaml): ZSL accuracy and
# the GZSL seen / unseen / harmonic mean, validation beside test, 5 seeds with a source each.
#   bash scripts/reproduce_fmnist_zeroshot.sh [--quick]
export METRICS="${METRICS:-test/zsl_acc test/gzsl_seen test/gzsl_unseen test/gzsl_h val/zsl_acc val/gzsl_h test/gzsl_h_uncalibrated}"
compare=""
for method in eszsl sae bilinear fclswgan; do
  compare="$compare --compare zeroshot+method=$method:zeroshot+method=class_mean"
done
export REPORT_ARGS="${REPORT_ARGS:-$compare --compare zeroshot+method=eszsl:zeroshot+method=sae \
  --compare zeroshot+method=fclswgan:zeroshot+method=bilinear}"
exec bash "$(dirname "$0")/reproduce.sh" fmnist_zeroshot "$@"
