#!/usr/bin/env bash
# Linear probes on unsupervised sources against random controls, Fashion-MNIST, 5 seeds with
# per-seed sources: the GAN discriminator (conf/experiment/fmnist_gan_probe.yaml), then the
# autoencoders (conf/experiment/fmnist_ae_probe.yaml), then the autoencoder on classes 0-4 and the
# random encoder with the default 30-step probe (fmnist_ae_probe_short.yaml, the same cached
# sources); a report for each.
#   bash scripts/reproduce_fmnist_probes.sh [--quick is not offered: the sources dominate]
set -euo pipefail
here="$(dirname "$0")"
status=0
gan="gan/linear_probe+source=gan"
ae="autoencoder/linear_probe"
REPORT_ARGS="${GAN_REPORT_ARGS:---compare $gan:finetune/linear_probe+source=random \
  --compare $gan:gan/linear_probe+source=random --compare $gan:finetune/linear_probe+source=gan}" \
  bash "$here/reproduce.sh" fmnist_gan_probe "$@" || status=$?
REPORT_ARGS="${AE_REPORT_ARGS:---compare $ae+data=target_pool:$ae+source=random \
  --compare $ae+data=source:$ae+source=random --compare $ae+data=target_pool:$ae+data=source}" bash "$here/reproduce.sh" fmnist_ae_probe "$@" || status=$?
REPORT_ARGS="${AE_SHORT_REPORT_ARGS:---compare $ae+source=autoencoder:$ae+source=random}" \
  bash "$here/reproduce.sh" fmnist_ae_probe_short "$@" || status=$?
exit "$status"
