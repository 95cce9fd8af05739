#!/usr/bin/env bash
# ESZSL with and without feature centring on digits (conf/experiment/digits_eszsl_centring.yaml),
# 5 seeds: test ZSL accuracy and GZSL H, centred paired against uncentred on the same seeds
# (docs/results/digits_eszsl_centring/report/, report-test_gzsl_h/).
#   bash scripts/reproduce_digits_eszsl_centring.sh [--quick]
export METRICS="${METRICS:-test/zsl_acc test/gzsl_h}"
export REPORT_ARGS="${REPORT_ARGS:---compare zeroshot+center=True:zeroshot+center=False}"
exec bash "$(dirname "$0")/reproduce.sh" digits_eszsl_centring "$@"
