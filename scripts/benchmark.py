"""Thin entry: ``python scripts/benchmark.py [--preset tiny|quick|full] [--out DIR]`` is
``transferlab bench ...`` (see docs/benchmarks.md)."""

import sys
from pathlib import Path

try:
    from transferlab.commands import main
except ModuleNotFoundError:  # a checkout that was not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from transferlab.commands import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
