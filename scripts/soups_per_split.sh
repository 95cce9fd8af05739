#!/usr/bin/env bash
# Model soups (transferlab soup) of a comparison's runs, one per data split: the finished train
# runs under DIR... are grouped by (labels_per_class, seed) (a seed draws the split and, with
# source.seed=${seed}, the source), and each group's uniform and greedy soups are written to
# OUT/lpc<labels>_seed<seed>/{uniform,greedy}/results.json, then reported. Running it again
# skips the splits whose two soups are written (an interrupted run goes on where it stopped).
# SOUP_ARGS adds options of transferlab soup (e.g. --bn-images 4096).
#   bash scripts/soups_per_split.sh OUT DIR...
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: soups_per_split.sh OUT DIR...}"
shift
status=0
while IFS=$'\t' read -r name dirs; do
  if [ -f "$out/$name/uniform/results.json" ] && [ -f "$out/$name/greedy/results.json" ]; then
    echo "soups of $name: already written, skipped"
    continue
  fi
  # shellcheck disable=SC2086  # dirs: the group's run directories (no spaces in run paths)
  transferlab soup $dirs --out "$out/$name" ${SOUP_ARGS:-} || status=$?
done < <(python - "$@" <<'PY'
import json, sys
from pathlib import Path
groups = {}
for root in sys.argv[1:]:
    for record in sorted(Path(root).rglob("results.json")):
        data = json.loads(record.read_text())
        if data.get("task") != "train" or data.get("status") != "completed":
            continue
        identity = data.get("identity") or {}
        key = f"lpc{identity.get('labels_per_class')}_seed{identity.get('seed')}"
        groups.setdefault(key, []).append(str(record.parent))
for key, dirs in sorted(groups.items()):
    if len(dirs) > 1:
        print(f"{key}\t{' '.join(dirs)}")
PY
)
# shellcheck disable=SC2086  # REPORT_ARGS: extra report options
python "$repo/scripts/report.py" "$out" --out "$out/report" --task all ${REPORT_ARGS:-}
exit "$status"
