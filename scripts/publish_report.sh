#!/usr/bin/env bash
# Copy a report's raw data (report.md, summary.csv, paired.csv, report.json) to docs/results/,
# the files behind the docs' tables; PUBLISH=0 skips it.
#   bash scripts/publish_report.sh <report dir> <folder under docs/results/>
set -euo pipefail
[ "${PUBLISH:-1}" = 1 ] || exit 0
repo="$(cd "$(dirname "$0")/.." && pwd)"
dest="$repo/docs/results/${2:?usage: publish_report.sh <report dir> <folder under docs/results/>}"
mkdir -p "$dest"
for file in report.md summary.csv paired.csv report.json; do
  cp "${1:?}/$file" "$dest/"
done
