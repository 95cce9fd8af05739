"""Thin entry point: `python train.py [hydra overrides]` (see README.md)."""

import sys
from pathlib import Path

try:
    from transferlab.cli import train_main
except ModuleNotFoundError:  # a checkout that was not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
    from transferlab.cli import train_main

if __name__ == "__main__":
    train_main()
