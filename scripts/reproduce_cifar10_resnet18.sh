#!/usr/bin/env bash
# ImageNet ResNet-18 fine-tuned on CIFAR-10 against scratch (needs internet; full run wants a GPU) (conf/experiment/cifar10_resnet18.yaml).
#   bash scripts/reproduce_cifar10_resnet18.sh [--quick]
exec bash "$(dirname "$0")/reproduce.sh" cifar10_resnet18 "$@"
