#!/usr/bin/env bash
# Run experiment sweeps (scripts/reproduce.sh, one after the other) in one or two lanes.
#   bash scripts/sweep_lanes.sh "<lane 1 experiments>" "<lane 2 experiments>"
# LANES=2 runs the two space-separated lists as two parallel chains of one thread each
# (perf.num_threads=1, faster on 2 cores); otherwise every sweep runs in turn with the default
# threads. Resuming needs the same LANES: a finished run is only skipped under its own settings.
# Exits non-zero if any sweep did.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
chain() {  # chain <experiments> [overrides...]: one reproduce.sh after the other
  local s=0 name
  for name in $1; do
    bash "$repo/scripts/reproduce.sh" "$name" "${@:2}" || s=$?
  done
  return "$s"
}
status=0
if [ "${LANES:-1}" = 2 ]; then
  OMP_NUM_THREADS=1 chain "${1:?}" perf.num_threads=1 &
  lane=$!
  OMP_NUM_THREADS=1 chain "${2:-}" perf.num_threads=1 || status=$?
  wait "$lane" || status=$?
else
  chain "${1:?} ${2:-}" || status=$?
fi
exit "$status"
