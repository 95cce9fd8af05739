#!/usr/bin/env bash
# Test finished runs again on a shifted copy of their target test split (data/shift.py: rotate,
# blur_sigma, invert, noise_std), each from the checkpoint its run tested (results.json
# metrics.best_checkpoint: WiSE-FT's interpolated weights, EMA's average, a LoRA run's adapters):
# one eval multirun into OUT, then a report of the eval runs.
#   bash scripts/eval_shifted.sh OUT 'SHIFT' RUN_OR_SWEEP_DIR...
#   e.g. bash scripts/eval_shifted.sh logs/reproduce/toolbox_noise0.2 '{noise_std:0.2}' logs/reproduce/fmnist_toolbox
# Re-running skips the evaluations that finished (resume=true); REPORT_ARGS adds report options.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: eval_shifted.sh OUT SHIFT DIR...}"
shift_spec="${2:?usage: eval_shifted.sh OUT SHIFT DIR...}"
shift 2
ckpts="$(python - "$@" <<'PY'
import json, sys
from pathlib import Path
found = []
for root in sys.argv[1:]:
    for record in sorted(Path(root).rglob("results.json")):
        data = json.loads(record.read_text())
        ckpt = (data.get("metrics") or {}).get("best_checkpoint")
        if data.get("task") == "train" and data.get("status") == "completed" and ckpt:
            if "," in ckpt:
                sys.exit(f"error: checkpoint path with a comma cannot be swept: {ckpt}")
            found.append(ckpt)
if not found:
    sys.exit(f"error: no completed train run with a checkpoint under {' '.join(sys.argv[1:])}")
print(",".join(found))
PY
)"
status=0
python "$repo/eval.py" -m "ckpt_path=$ckpts" "+data.shift=$shift_spec" "hydra.sweep.dir=$out" resume=true \
  print_config=false || status=$?
# shellcheck disable=SC2086  # REPORT_ARGS: extra report options
python "$repo/scripts/report.py" "$out" --out "$out/report" --task eval ${REPORT_ARGS:-}
exit "$status"
