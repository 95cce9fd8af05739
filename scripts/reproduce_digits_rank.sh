#!/usr/bin/env bash
# Which source should I transfer from, on digits (docs/ranking.md, "Digits: five sources, ranked
# and checked against linear probes"): five sources of digits 5-9 (5 labels per class), a random
# small_cnn (conf/experiment/digits_rank.yaml), small_cnn pretrained on digits 0-4 for 1, 3 and
# 15 epochs (digits_rank_pretrain) and ImageNet EfficientNet-Lite0 (digits_rank_imagenet), each
# linearly probed (seeds 0-2); a report over the three sweeps, then `transferlab rank --against`
# them: LogME, LEEP, NCE and H-score of every source on the seed-0 labelled split, and how well
# each score's ranking predicted the probes' accuracy (Kendall tau, weighted tau).
# Raw data: docs/results/digits_rank/ (report/, rank/).
#   bash scripts/reproduce_digits_rank.sh [train.py overrides, e.g. perf.num_threads=1]
# The overrides go to every sweep and to the ranking. Run it again with the same overrides to
# resume (a finished run is skipped under the same settings); PUBLISH=0 leaves docs/ alone.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
export TRANSFERLAB_ROOT="$root" HF_HUB_OFFLINE=1
publish="${PUBLISH:-1}"
start=$(date +%s)
status=0
sweeps=()
for name in digits_rank digits_rank_pretrain digits_rank_imagenet; do
  # each sweep's own report stays under logs/; the combined one below is published
  PUBLISH=0 bash "$repo/scripts/reproduce.sh" "$name" "$@" || status=$?
  sweeps+=("$root/logs/reproduce/$name")
done
# every source's probe against the random control's on the same seeds (row names as the
# combined report writes them, "+" for a space)
probe="finetune/linear_probe"
compare=()
for row in "model=small_cnn+max_epochs=1+source=pretrain" \
  "model=small_cnn+max_epochs=3+source=pretrain" "model=small_cnn+max_epochs=15+source=pretrain" \
  "model=efficientnet_lite0+source=imagenet"; do
  compare+=(--compare "$probe+$row:$probe+model=small_cnn+source=random")
done
combined="$root/logs/reproduce/digits_rank/combined"
python "$repo/scripts/report.py" "${sweeps[@]}" --out "$combined" "${compare[@]}" || status=$?
PUBLISH="$publish" bash "$repo/scripts/publish_report.sh" "$combined" digits_rank/report \
  || status=$?
out="$root/logs/reproduce/digits_rank/rank"
cd "$root"
transferlab rank experiment=digits_rank seed=0 "$@" --source random \
  --source pretrain:source.max_epochs=1 --source pretrain:source.max_epochs=3 --source pretrain \
  --source imagenet:model=efficientnet_lite0 --out "$out" --against "${sweeps[@]}" || status=$?
if [ "$publish" = 1 ] && [ -d "$out" ]; then
  mkdir -p "$repo/docs/results/digits_rank/rank"
  cp "$out"/ranking.{md,csv,json} "$repo/docs/results/digits_rank/rank/"
fi
echo "reproduce_digits_rank: $(($(date +%s) - start)) s wall time"
exit "$status"
