#!/usr/bin/env bash
# Which source should I transfer from? (issue 17; docs/ranking.md) Thirteen sources of one
# Fashion-MNIST target (classes 5-9, 20 labels per class): EfficientNet-Lite0/1/2 with ImageNet
# weights at 32 and 64 px (conf/experiment/fmnist_rank.yaml), small_cnn random, supervised on
# classes 0-4, autoencoder and GAN (fmnist_rank_small), SimCLR, BYOL and SimSiam
# (fmnist_rank_ssl); each fine-tuned (linear probe and full, seeds 0-2), then
# `transferlab rank --against` the three sweeps: LogME, LEEP, NCE and H-score of every source on
# the seed-0 labelled split, and how well each score's ranking predicted the accuracies
# (Kendall tau, weighted tau). Raw data: docs/results/fmnist_rank/.
#   bash scripts/reproduce_fmnist_rank.sh
# LANES=2 runs the ImageNet sweep and the small_cnn sweeps as two parallel one-thread chains.
# Run it again with the same LANES to resume (a finished run is only skipped under the same
# settings; LANES=2 pins perf.num_threads=1).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
export HF_HUB_OFFLINE=1
status=0
LANES="${LANES:-1}" bash "$repo/scripts/sweep_lanes.sh" "fmnist_rank" \
  "fmnist_rank_small fmnist_rank_ssl" || status=$?
small="model=small_cnn,data.image_size=null"
sources=()
for model in efficientnet_lite0 efficientnet_lite1 efficientnet_lite2; do
  for size in 32 64; do
    sources+=(--source "imagenet:model=$model,data.image_size=$size")
  done
done
for kind in random pretrain autoencoder gan; do
  sources+=(--source "$kind:$small")
done
for method in simclr byol simsiam; do
  sources+=(--source "ssl:$small,source.method=$method")
done
# the small_cnn sources side by side, each against the random encoder on the same seeds (row
# names as the combined report writes them, "+" for a space)
compare=()
for row in "source=pretrain+weight_decay=0.0001" "source=autoencoder+weight_decay=0" source=gan \
  "method=simclr+source=ssl+weight_decay=0.0001" "method=byol+source=ssl+weight_decay=0.0001" \
  "method=simsiam+source=ssl+weight_decay=0.0001"; do
  for mode in linear_probe full; do
    compare+=(--compare "finetune/$mode+$row:finetune/$mode+source=random")
  done
done
combined="$root/logs/reproduce/fmnist_rank/combined"
python "$repo/scripts/report.py" "$root/logs/reproduce/fmnist_rank_small" \
  "$root/logs/reproduce/fmnist_rank_ssl" --out "$combined" "${compare[@]}" || status=$?
bash "$repo/scripts/publish_report.sh" "$combined" fmnist_rank/combined || status=$?
out="$root/logs/reproduce/fmnist_rank/rank"
cd "$root"
transferlab rank experiment=fmnist_rank seed=0 "${sources[@]}" --out "$out" \
  --against "$root/logs/reproduce/fmnist_rank" "$root/logs/reproduce/fmnist_rank_small" \
  "$root/logs/reproduce/fmnist_rank_ssl" || status=$?
if [ "${PUBLISH:-1}" = 1 ] && [ -d "$out" ]; then
  mkdir -p "$repo/docs/results/fmnist_rank/rank"
  cp "$out"/ranking.{md,csv,json} "$repo/docs/results/fmnist_rank/rank/"
fi
exit "$status"
