#!/usr/bin/env bash
# One methods table: every strategy that exists, side by side (conf/experiment/methods.yaml).
#   bash scripts/reproduce_methods.sh [--quick]
exec bash "$(dirname "$0")/reproduce.sh" methods "$@"
