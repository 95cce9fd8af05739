#!/usr/bin/env bash
# Fine-tuning the ImageNet EfficientNet-Lite0 with every label of Fashion-MNIST classes 5-9
# (issue 13): full, LP-FT and partial (conf/experiment/fmnist_imagenet_ft_all.yaml) and scratch
# (fmnist_imagenet_scratch_all), with the linear probes of fmnist_imagenet_all (the same 1,400
# steps), 3 seeds; one report, every mode paired against scratch and the probes
# (docs/results/fmnist_imagenet_ft_all/report/). Then all ten classes with every label: linear
# probes (fmnist10_imagenet_all), full / LP-FT / partial fine-tuning (fmnist10_imagenet_ft_all)
# and scratch (fmnist10_imagenet_scratch_all), paired (docs/results/fmnist10_imagenet_all/report/).
# 33 runs (about 13 min each for fine-tuning and scratch on one thread), resumable: run it again
# with the same LANES and overrides to continue.
#   bash scripts/reproduce_fmnist_imagenet_ft_all.sh [extra hydra overrides...]
# LANES=2 (default) runs two parallel chains of one thread each, then the ten-class scratch and
# fine-tuning runs two at a time (Hydra's joblib launcher); LANES=1 everything in turn with the
# default threads. Sweeps in $TRANSFERLAB_ROOT/logs/reproduce/fmnist_imagenet_ft_all/{full_lp_ft,
# partial,scratch,probes}, fmnist10_imagenet_all/, fmnist10_imagenet_scratch_all/ and
# fmnist10_imagenet_ft_all/.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/imagenet_mode_comparisons.sh
source "$repo/scripts/imagenet_mode_comparisons.sh"
root="${TRANSFERLAB_ROOT:-$PWD}"
export TRANSFERLAB_ROOT="$root" HF_HUB_OFFLINE=1
out="$root/logs/reproduce/fmnist_imagenet_ft_all"
out10="$root/logs/reproduce/fmnist10_imagenet_all"
scratch10="$root/logs/reproduce/fmnist10_imagenet_scratch_all"
ft10="$root/logs/reproduce/fmnist10_imagenet_ft_all"
common=(resume=true print_config=false trainer.enable_progress_bar=false)
start=$(date +%s)
sweep() {  # sweep <sweep dir> <experiment> [overrides...]
  python "$repo/train.py" -m "experiment=$2" "hydra.sweep.dir=$1" "${common[@]}" "${@:3}"
}
lane1() {  # the two slowest modes, then the ten-class probes
  local s=0
  sweep "$out/full_lp_ft" fmnist_imagenet_ft_all strategy.mode=full,lp_ft "$@" || s=$?
  sweep "$out10" fmnist10_imagenet_all "$@" || s=$?
  return "$s"
}
lane2() {  # partial fine-tuning, scratch and the five-class probes (ImageNet, self-pretrained)
  local s=0
  sweep "$out/partial" fmnist_imagenet_ft_all strategy.mode=partial "$@" || s=$?
  sweep "$out/scratch" fmnist_imagenet_scratch_all "$@" || s=$?
  sweep "$out/probes" fmnist_imagenet_all "$@" || s=$?
  return "$s"
}
status=0
if [ "${LANES:-2}" = 2 ]; then
  OMP_NUM_THREADS=1 lane1 perf.num_threads=1 "$@" &
  first=$!
  OMP_NUM_THREADS=1 lane2 perf.num_threads=1 "$@" || status=$?
  wait "$first" || status=$?
  pair=(perf.num_threads=1 hydra/launcher=joblib hydra.launcher.n_jobs=2)
  OMP_NUM_THREADS=1 sweep "$scratch10" fmnist10_imagenet_scratch_all "${pair[@]}" "$@" || status=$?
  OMP_NUM_THREADS=1 sweep "$ft10" fmnist10_imagenet_ft_all "${pair[@]}" "$@" || status=$?
else
  lane1 "$@" || status=$?
  lane2 "$@" || status=$?
  sweep "$scratch10" fmnist10_imagenet_scratch_all "$@" || status=$?
  sweep "$ft10" fmnist10_imagenet_ft_all "$@" || status=$?
fi
# row names as the combined report writes them ("+" for a space)
probe="finetune/linear_probe+source=imagenet"
pretrain="finetune/linear_probe+source=pretrain"
mapfile -t compare < <(mode_comparisons "$probe" scratch)
compare+=(--compare "$probe:$pretrain" --compare finetune/lp_ft:finetune/partial)
python "$repo/scripts/report.py" "$out/full_lp_ft" "$out/partial" "$out/scratch" "$out/probes" \
  --out "$out/report" "${compare[@]}" || status=$?
bash "$repo/scripts/publish_report.sh" "$out/report" fmnist_imagenet_ft_all/report || status=$?
mapfile -t compare10 < <(mode_comparisons finetune/linear_probe scratch)
python "$repo/scripts/report.py" "$out10" "$scratch10" "$ft10" --out "$out10/combined" \
  "${compare10[@]}" || status=$?
bash "$repo/scripts/publish_report.sh" "$out10/combined" fmnist10_imagenet_all/report || status=$?
echo "reproduce fmnist_imagenet_ft_all: $(($(date +%s) - start)) s wall time; reports in $out/report, $out10/combined"
exit "$status"
