#!/usr/bin/env bash
# The frozen-feature cache against the image path (docs/frozen_features.md, "How the results
# stay those of the image path"): the digits linear probe (conf/experiment/
# digits_feature_cache.yaml) and lp_ft (digits_feature_cache_lp_ft), each with
# strategy.feature_cache=false and auto, seeds 0-2; one report over both sweeps per metric
# (test/acc, val/acc_best, test/loss) with the cached runs paired against the image-fed ones.
# Raw data: docs/results/digits_feature_cache/ (report/, report-val_acc_best/,
# report-test_loss/).
#   bash scripts/reproduce_digits_feature_cache.sh [train.py overrides, e.g. perf.num_threads=1]
# Run it again with the same overrides to resume; PUBLISH=0 leaves docs/ alone.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
export TRANSFERLAB_ROOT="$root"
publish="${PUBLISH:-1}"
start=$(date +%s)
status=0
sweeps=()
for name in digits_feature_cache digits_feature_cache_lp_ft; do
  PUBLISH=0 bash "$repo/scripts/reproduce.sh" "$name" "$@" || status=$?
  sweeps+=("$root/logs/reproduce/$name")
done
compare=()
for mode in linear_probe lp_ft; do
  compare+=(--compare "finetune/$mode+feature_cache=auto:finetune/$mode+feature_cache=False")
done
combined="$root/logs/reproduce/digits_feature_cache/combined"
first=1
for metric in test/acc val/acc_best test/loss; do
  if [ "$first" = 1 ]; then dir="report"; else dir="report-${metric//\//_}"; fi
  first=0
  python "$repo/scripts/report.py" "${sweeps[@]}" --out "$combined/$dir" --metric "$metric" \
    "${compare[@]}" || status=$?
  PUBLISH="$publish" bash "$repo/scripts/publish_report.sh" "$combined/$dir" \
    "digits_feature_cache/$dir" || status=$?
done
echo "reproduce_digits_feature_cache: $(($(date +%s) - start)) s wall time"
exit "$status"
