"""Wall time of a training process's imports in fresh interpreters, alternating variants.

Times ``import transferlab.cli, transferlab.cli.job, lightning, torchmetrics`` (what train.py's
job imports before it builds anything) for this checkout, optionally for another checkout's
``src`` (``--before-src``, e.g. a ``git worktree`` of the previous commit), and the floor that
torch sets: ``import torch`` and ``import torch, torch._dynamo`` (any torch optimizer imports
``torch._dynamo``). Prints the median and range of each. Run it on a quiet machine::

    git worktree add /tmp/before HEAD~1
    python scripts/bench_imports.py --before-src /tmp/before/src --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

TRAINING_IMPORTS = "import transferlab.cli, transferlab.cli.job, lightning, torchmetrics"


def seconds(code: str, env: dict[str, str]) -> float:
    """Wall seconds of a fresh interpreter that runs ``code`` and exits."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-src", help="another checkout's src directory to time as well")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    variants: dict[str, tuple[str, dict[str, str]]] = {}
    if args.before_src:
        before_env = {**os.environ, "PYTHONPATH": os.path.abspath(args.before_src)}
        variants["before"] = (TRAINING_IMPORTS, before_env)
    variants["this checkout"] = (TRAINING_IMPORTS, dict(os.environ))
    variants["import torch"] = ("import torch", dict(os.environ))
    variants["torch + torch._dynamo"] = ("import torch, torch._dynamo", dict(os.environ))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (code, env) in variants.items():
            times[name].append(seconds(code, env))
    for name, values in times.items():
        print(
            f"{name:24s} median {statistics.median(values):.2f} s  "
            f"range {min(values):.2f}-{max(values):.2f}  " + " ".join(f"{v:.2f}" for v in values)
        )


if __name__ == "__main__":
    main()
