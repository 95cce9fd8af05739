#!/usr/bin/env bash
# Several experiment sweeps (scripts/reproduce.sh each, unpublished), then one report over all of
# them per metric (METRICS, space-separated, default test/acc; REPORT_ARGS: report options such
# as the --compare pairs across the sweeps), published to docs/results/<name>/report/ and
# report-<metric>/ (PUBLISH=0 skips that).
#   bash scripts/reproduce_combined.sh <name> "<experiment> <experiment> ..." [overrides...]
# Running it again with the same overrides resumes: finished runs are skipped.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
export TRANSFERLAB_ROOT="$root"
name="${1:?usage: reproduce_combined.sh <name> \"<experiments>\" [overrides...]}"
experiments="${2:?usage: reproduce_combined.sh <name> \"<experiments>\" [overrides...]}"
shift 2
start=$(date +%s)
status=0
sweeps=()
for experiment in $experiments; do
  # each sweep's own report with the defaults: the comparisons span the sweeps
  PUBLISH=0 METRICS="" REPORT_ARGS="" bash "$repo/scripts/reproduce.sh" "$experiment" "$@" \
    || status=$?
  sweeps+=("$root/logs/reproduce/$experiment")
done
combined="$root/logs/reproduce/$name/combined"
first=1
for metric in ${METRICS:-test/acc}; do
  if [ "$first" = 1 ]; then dir="report"; else dir="report-${metric//\//_}"; fi
  first=0
  # shellcheck disable=SC2086  # REPORT_ARGS: report options
  python "$repo/scripts/report.py" "${sweeps[@]}" --out "$combined/$dir" --metric "$metric" \
    ${REPORT_ARGS:-} || status=$?
  bash "$repo/scripts/publish_report.sh" "$combined/$dir" "$name/$dir" || status=$?
done
echo "reproduce $name: $(($(date +%s) - start)) s wall time; reports in $combined"
exit "$status"
