"""The prepared GPU script (scripts/gpu_check.sh, issue 21) rehearsed on the CPU: every step's
command composes and runs (a few steps each), and its table is written. The GPU itself is
never used in tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_script_rehearses_every_step_on_the_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [
        line for line in (tmp_path / "gpu_check.md").read_text().splitlines() if "| ok |" in line
    ]
    labels = [row.split("|")[1].strip() for row in rows]
    assert labels == [
        "fine-tune 32-true",
        "fine-tune float32",
        "fine-tune 32-true compiled",
        "fine-tune DDP x2",
        "CIFAR-format 224 px 32-true",
    ]
    assert all(row.split("|")[5].strip() for row in rows)  # each run has a test accuracy
