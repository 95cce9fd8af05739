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
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
export TRANSFERLAB_ROOT="$root"
publish="${PUBLISH:-1}"
start=$(date +%s)
status=0
sweeps=()
for name in digits_ddp_one_process digits_ddp; do
  PUBLISH=0 bash "$repo/scripts/reproduce.sh" "$name" "$@" || status=$?
  sweeps+=("$root/logs/reproduce/$name")
done
# row names as the combined report writes them ("+" for a space)
ddp="finetune/full+batch_size=25+devices=2+num_nodes=1+strategy=ddp_spawn+sync_batchnorm=False"
one="finetune/full+batch_size=50+devices=1"
combined="$root/logs/reproduce/digits_ddp/combined"
first=1
for metric in test/acc val/acc_best test/loss; do
  if [ "$first" = 1 ]; then dir="report"; else dir="report-${metric//\//_}"; fi
  first=0
  python "$repo/scripts/report.py" "${sweeps[@]}" --out "$combined/$dir" --metric "$metric" \
    --compare "$ddp:$one" || status=$?
  PUBLISH="$publish" bash "$repo/scripts/publish_report.sh" "$combined/$dir" "digits_ddp/$dir" \
    || status=$?
done
echo "reproduce_digits_ddp: $(($(date +%s) - start)) s wall time"
exit "$status"
