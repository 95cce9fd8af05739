"""A run killed with SIGKILL mid-epoch and resumed finishes with the same metrics as an
uninterrupted run (deterministic mode, CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# digits with augmentation and dropout (both draw random numbers) and long enough epochs
# (20,000 samples drawn with replacement) that a kill lands inside an epoch
ARGS = (
    "print_config=false",
    "trainer.enable_progress_bar=false",
    "trainer.deterministic=true",
    "trainer.max_epochs=4",
    "data.min_samples_per_epoch=20000",
    "data.augment.crop_padding=1",
    "strategy.head_dropout=0.3",
)


def _command(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), f"hydra.run.dir={run_dir}", *ARGS, *extra]


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "TRANSFERLAB_ROOT": str(root), "HF_HUB_OFFLINE": "1"}


def _checkpoint_epoch(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_metrics(tmp_path: Path) -> None:
    env = _env(tmp_path)
    whole = subprocess.run(
        _command(tmp_path / "whole"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert whole.returncode == 0, whole.stderr[-2000:]

    cut = tmp_path / "cut"
    last = cut / "checkpoints" / "last.ckpt"
    first = subprocess.Popen(
        _command(cut),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while not last.is_file() and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the next epoch (each takes seconds)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert last.is_file() and not (cut / "results.json").exists()
    assert _checkpoint_epoch(last) < 3, "the run should have been cut off before its last epoch"

    resumed = subprocess.run(
        _command(cut, "resume=true"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming the interrupted run" in resumed.stdout + resumed.stderr
    a = json.loads((tmp_path / "whole" / "results.json").read_text())
    b = json.loads((cut / "results.json").read_text())
    assert a["epochs_trained"] == b["epochs_trained"] == 4
    for key in ("val/acc_best", "test/acc", "test/acc_per_class_mean", "test/loss"):
        assert a["metrics"][key] == b["metrics"][key], key
