#!/usr/bin/env bash
# Two CPU processes per run against one with the same global batch (docs/scaling.md, "Several
# processes per run (DDP)"): digits 0-4 -> 5-9, small_cnn, 10 labels per class, 10 epochs, a
# 2-epoch source, seeds 0-2; trainer=ddp_cpu data.batch_size=25 (conf/experiment/digits_ddp.yaml,
# run as ddp_spawn) and trainer=cpu data.batch_size=50 (digits_ddp_one_process); one report over
# both sweeps per metric (test/acc, val/acc_best, test/loss), DDP paired against one process.
# Raw data: docs/results/digits_ddp/ (report/, report-val_acc_best/, report-test_loss/).
#   bash scripts/reproduce_digits_ddp.sh [train.py overrides, e.g. perf.num_threads=1]
# Each DDP run starts two processes: on a 2-core machine it takes both cores. Run it again with
# the same overrides to resume; PUBLISH=0 leaves docs/ alone.
# row names as the combined report writes them ("+" for a space)
ddp="finetune/full+batch_size=25+devices=2+num_nodes=1+strategy=ddp_spawn+sync_batchnorm=False"
one="finetune/full+batch_size=50+devices=1"
export METRICS="${METRICS:-test/acc val/acc_best test/loss}"
export REPORT_ARGS="${REPORT_ARGS:---compare $ddp:$one}"
exec bash "$(dirname "$0")/reproduce_combined.sh" digits_ddp "digits_ddp_one_process digits_ddp" "$@"
