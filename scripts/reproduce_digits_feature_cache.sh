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
compare=""
for mode in linear_probe lp_ft; do
  compare="$compare --compare finetune/$mode+feature_cache=auto:finetune/$mode+feature_cache=False"
done
export METRICS="${METRICS:-test/acc val/acc_best test/loss}"
export REPORT_ARGS="${REPORT_ARGS:-$compare}"
exec bash "$(dirname "$0")/reproduce_combined.sh" digits_feature_cache \
  "digits_feature_cache digits_feature_cache_lp_ft" "$@"
