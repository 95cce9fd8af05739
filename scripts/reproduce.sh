#!/usr/bin/env bash
# Reproduce a comparison with one command: a Hydra multirun of an experiment file, then a report.
#   bash scripts/reproduce.sh <experiment> [--quick] [extra hydra overrides...]
# The sweep (conf/experiment/<experiment>.yaml, hydra.sweeper.params) runs into
# $TRANSFERLAB_ROOT/logs/reproduce/<experiment>[_quick]; running the same command again skips
# the runs that finished and continues an interrupted one (resume=true). REPORT_ARGS adds
# options to the report (`transferlab report --help`).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
name="${1:?usage: reproduce.sh <experiment> [--quick] [overrides...]}"
shift
if [ "${1:-}" = "--quick" ]; then
  name="${name}_quick"
  shift
fi
root="${TRANSFERLAB_ROOT:-$PWD}"
out="$root/logs/reproduce/$name"
start=$(date +%s)
TRANSFERLAB_ROOT="$root" python "$repo/train.py" -m "experiment=$name" \
  "hydra.sweep.dir=$out" resume=true print_config=false trainer.enable_progress_bar=false "$@"
# shellcheck disable=SC2086  # REPORT_ARGS: extra report options set by the wrapper scripts
python "$repo/scripts/report.py" "$out" --out "$out/report" ${REPORT_ARGS:-}
echo "reproduce $name: $(( $(date +%s) - start )) s wall time; report in $out/report"
