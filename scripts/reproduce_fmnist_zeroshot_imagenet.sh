#!/usr/bin/env bash
# Zero-shot on Fashion-MNIST with ImageNet features (conf/experiment/fmnist_zeroshot_imagenet.yaml,
# EfficientNet-Lite0 from its offline wheel; the leakage guard's opt-in is in the file) beside the
# same five methods on the small_cnn pretrained here on the seen classes (fmnist_zeroshot), seeds
# 0-2, on the same splits and machine; one report per metric with each method's ImageNet row
# paired against its small_cnn row (docs/results/fmnist_zeroshot_imagenet/).
#   bash scripts/reproduce_fmnist_zeroshot_imagenet.sh [extra hydra overrides...]
# LANES=2 (default): the two sweeps side by side, one thread each; LANES=1: one after the other.
# Resumable: run it again to continue. Sweeps in $TRANSFERLAB_ROOT/logs/reproduce/
# fmnist_zeroshot_imagenet/{imagenet,small_cnn}.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
export TRANSFERLAB_ROOT="$root" HF_HUB_OFFLINE=1
out="$root/logs/reproduce/fmnist_zeroshot_imagenet"
start=$(date +%s)
sweep() {  # sweep <sweep dir> <experiment> [overrides...]
  python "$repo/train.py" -m "experiment=$2" "hydra.sweep.dir=$1" resume=true \
    print_config=false trainer.enable_progress_bar=false "${@:3}"
}
status=0
if [ "${LANES:-2}" = 2 ]; then
  OMP_NUM_THREADS=1 sweep "$out/imagenet" fmnist_zeroshot_imagenet perf.num_threads=1 "$@" &
  first=$!
  OMP_NUM_THREADS=1 sweep "$out/small_cnn" fmnist_zeroshot seed=0,1,2 perf.num_threads=1 "$@" \
    || status=$?
  wait "$first" || status=$?
else
  sweep "$out/imagenet" fmnist_zeroshot_imagenet "$@" || status=$?
  sweep "$out/small_cnn" fmnist_zeroshot seed=0,1,2 "$@" || status=$?
fi
# row names as the combined report writes them (the keys that differ; "+" for a space)
imagenet="zeroshot+image_size=64+model=efficientnet_lite0+source=imagenet+allow_unverified_source=True"
small="zeroshot+image_size=null+model=small_cnn+source=pretrain+allow_unverified_source=False"
compare=()
for method in eszsl sae bilinear fclswgan class_mean; do
  compare+=(--compare "$imagenet+method=$method:$small+method=$method")
done
first=1
for metric in test/zsl_acc test/gzsl_h test/gzsl_seen test/gzsl_unseen; do
  if [ "$first" = 1 ]; then dir="report"; else dir="report-${metric//\//_}"; fi
  first=0
  python "$repo/scripts/report.py" "$out/imagenet" "$out/small_cnn" --out "$out/$dir" \
    --metric "$metric" "${compare[@]}" || status=$?
  bash "$repo/scripts/publish_report.sh" "$out/$dir" "fmnist_zeroshot_imagenet/$dir" || status=$?
done
echo "reproduce fmnist_zeroshot_imagenet: $(($(date +%s) - start)) s wall time; reports in $out/report*"
exit "$status"
