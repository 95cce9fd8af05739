"""Thin entry point: `python eval.py [hydra overrides]` (see README.md)."""

import sys
from pathlib import Path

try:
    from transferlab.cli import eval_main
except ModuleNotFoundError:  # a checkout that was not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
    from transferlab.cli import eval_main

if __name__ == "__main__":
    eval_main()
