#!/usr/bin/env bash
# The seed documents' systems (shared/seeds/) as their offline Fashion-MNIST twins
# (conf/experiment/seed00*_*fmnist.yaml): one reproduce.sh sweep and report per twin; seed 000
# has two, a self-pretrained ResNet-18 and EfficientNet-Lite0 with ImageNet weights (offline).
#   bash scripts/reproduce_seeds.sh [extra hydra overrides...]
# SEEDS (space-separated twin names) runs a subset, e.g. SEEDS=seed002_lenet5_fmnist. The twins
# of seeds 001 and 002 also run their scratch baseline (the strategy refuses the fine-tuning
# options, so it cannot share their sweep) into <sweep dir>/scratch, which the report reads.
# The CIFAR-10 / ImageNet originals need internet (and a GPU for seeds 000, 003, 004):
#   bash scripts/reproduce.sh seed000_resnet18_cifar10 trainer=gpu   (and seed001..seed004)
set -euo pipefail
here="$(dirname "$0")"
root="${TRANSFERLAB_ROOT:-$PWD}"
twins="${SEEDS:-seed000_resnet18_fmnist seed000_efficientnet_lite0_fmnist seed001_cnn_transfer_fmnist \
seed002_lenet5_fmnist seed003_vgg16_zeroshot_fmnist seed004_resnet18_modes_fmnist}"
status=0
for twin in $twins; do
  case "$twin" in
    seed001_*|seed002_*)
      TRANSFERLAB_ROOT="$root" python "$here/../train.py" -m "experiment=$twin" strategy=scratch \
        '~strategy.mode' '~strategy.backbone_lr_ratio' \
        "hydra.sweep.dir=$root/logs/reproduce/$twin/scratch" resume=true print_config=false \
        trainer.enable_progress_bar=false "$@" || status=$?
      ;;
  esac
  bash "$here/reproduce.sh" "$twin" "$@" || status=$?
done
exit "$status"
