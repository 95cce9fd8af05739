#!/usr/bin/env bash
# SSL source (SimCLR on the target pool) against the random-encoder control: Fashion-MNIST
# classes 5-9, 20 labels per class, linear probe (docs/ssl.md), seeds 0-4, an SSL source per
# seed; then a report with the paired difference, published (raw data) to
# docs/results/fmnist_ssl/<METHOD>/ (PUBLISH=0 skips that).
#   bash scripts/reproduce_fmnist_ssl.sh [METHOD]     # METHOD: simclr (default), byol, ...
# Runs go to $TRANSFERLAB_ROOT/logs/reproduce/fmnist_ssl/{random,METHOD}; running the command
# again skips finished runs (resume=true). SEEDS (default 0,1,2,3,4) picks the seeds.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${TRANSFERLAB_ROOT:-$PWD}"
method="${1:-simclr}"
out="$root/logs/reproduce/fmnist_ssl"
common=(data=fashion_mnist strategy=finetune strategy.mode=linear_probe "seed=${SEEDS:-0,1,2,3,4}"
  resume=true print_config=false trainer.enable_progress_bar=false)
status=0
TRANSFERLAB_ROOT="$root" python "$repo/train.py" -m "${common[@]}" source=random \
  "hydra.sweep.dir=$out/random" || status=$?
TRANSFERLAB_ROOT="$root" python "$repo/train.py" -m "${common[@]}" source=ssl \
  "source.method=${method}" source.data=target_pool source.max_epochs=5 \
  "hydra.sweep.dir=$out/${method}" || status=$?
report="$out/report_${method}"
python "$repo/scripts/report.py" "$out/random" "$out/${method}" --out "$report" \
  --compare "finetune/linear_probe+source=ssl:finetune/linear_probe+source=random"
bash "$repo/scripts/publish_report.sh" "$report" "fmnist_ssl/${method}"
exit "$status"
