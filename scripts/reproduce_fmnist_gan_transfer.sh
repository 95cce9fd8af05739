#!/usr/bin/env bash
# GAN-to-GAN transfer on Fashion-MNIST (conf/experiment/fmnist_gan_transfer.yaml; docs/gan.md):
# a target GAN initialised from the source GAN against one from scratch, 5 seeds with per-seed
# sources; reports of the feature FID and KID after training (lower is better), each with the
# paired difference source - scratch, and the FID at initialisation (report/,
# report-test_kid_mean/ and report-init_fid/, published to
# docs/results/fmnist_gan_transfer/).
#   bash scripts/reproduce_fmnist_gan_transfer.sh [extra hydra overrides...]
export METRICS="${METRICS:-test/fid test/kid_mean init/fid}"
export REPORT_ARGS="${REPORT_ARGS:---compare transfer_gan+init=source:transfer_gan+init=scratch}"
exec bash "$(dirname "$0")/reproduce.sh" fmnist_gan_transfer "$@"
