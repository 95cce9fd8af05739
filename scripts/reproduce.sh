#!/usr/bin/env bash
# Reproduce a comparison with one command: a Hydra multirun of an experiment file, then a report.
#   bash scripts/reproduce.sh <experiment> [--quick] [extra hydra overrides...]
# The sweep (conf/experiment/<experiment>.yaml, hydra.sweeper.params) runs into
# $TRANSFERLAB_ROOT/logs/reproduce/<experiment>[_quick]; running the same command again skips
# the runs that finished and continues an interrupted one (resume=true). REPORT_ARGS adds
# options to the report (`transferlab report --help`); METRICS (space-separated, default
# test/acc) makes one report per metric (report/, report-<metric>/).
# A full (not --quick) run copies each report's raw data (report.md, summary.csv, paired.csv,
# report.json) to docs/results/<experiment>/<report dir>/, the files behind docs/results.md's
# tables (PUBLISH=0 skips that).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
name="${1:?usage: reproduce.sh <experiment> [--quick] [overrides...]}"
shift
publish="${PUBLISH:-1}"
if [ "${1:-}" = "--quick" ]; then
  name="${name}_quick"
  publish=0
  shift
fi
root="${TRANSFERLAB_ROOT:-$PWD}"
out="$root/logs/reproduce/$name"
start=$(date +%s)
# a multirun with failed jobs exits 1 after listing them: report anyway (failed runs are listed
# there, never averaged), then exit with the sweep's status
status=0
TRANSFERLAB_ROOT="$root" python "$repo/train.py" -m "experiment=$name" \
  "hydra.sweep.dir=$out" resume=true print_config=false trainer.enable_progress_bar=false "$@" \
  || status=$?
first=1
for metric in ${METRICS:-test/acc}; do
  if [ "$first" = 1 ]; then dir="report"; else dir="report-${metric//\//_}"; fi
  first=0
  # shellcheck disable=SC2086  # REPORT_ARGS: extra report options set by the wrapper scripts
  python "$repo/scripts/report.py" "$out" --out "$out/$dir" --metric "$metric" ${REPORT_ARGS:-}
  PUBLISH="$publish" bash "$repo/scripts/publish_report.sh" "$out/$dir" "$name/$dir"
done
echo "reproduce $name: $(( $(date +%s) - start )) s wall time; report in $out/report"
exit "$status"
