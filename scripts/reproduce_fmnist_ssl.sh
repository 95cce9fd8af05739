#!/usr/bin/env bash
# SSL source (SimCLR on the target pool) against the random-encoder control: Fashion-MNIST
# classes 5-9, 20 labels per class, linear probe, seeds 0-2 (docs/ssl.md).
#   bash scripts/reproduce_fmnist_ssl.sh [METHOD]     # METHOD: simclr (default), byol, ...
set -euo pipefail
cd "$(dirname "$0")/.."
method="${1:-simclr}"
common=(data=fashion_mnist strategy=finetune strategy.mode=linear_probe seed=0,1,2
  print_config=false trainer.enable_progress_bar=false)
python train.py -m "${common[@]}" source=random hydra.sweep.dir=logs/reproduce/fmnist_ssl/random
python train.py -m "${common[@]}" source=ssl "source.method=${method}" source.data=target_pool \
  source.max_epochs=5 "hydra.sweep.dir=logs/reproduce/fmnist_ssl/${method}"
