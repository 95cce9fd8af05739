"""A run killed with SIGKILL mid-epoch and resumed finishes with the same metrics as an
uninterrupted run (deterministic mode, CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import cli_command, cli_env, run_cli

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


def _args(run_dir: Path, *extra: str) -> tuple[str, ...]:
    """``train.py`` arguments of the run in ``run_dir``."""
    return (f"hydra.run.dir={run_dir}", *ARGS, *extra)


def _checkpoint_epoch(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_metrics(tmp_path: Path) -> None:
    whole = run_cli("train.py", *_args(tmp_path / "whole"), root=tmp_path, timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]

    cut = tmp_path / "cut"
    last = cut / "checkpoints" / "last.ckpt"
    first = subprocess.Popen(
        cli_command("train.py", *_args(cut)),
        env=cli_env(tmp_path),
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

    resumed = run_cli("train.py", *_args(cut, "resume=true"), root=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming the interrupted run" in resumed.stdout + resumed.stderr
    a = json.loads((tmp_path / "whole" / "results.json").read_text())
    b = json.loads((cut / "results.json").read_text())
    assert a["epochs_trained"] == b["epochs_trained"] == 4
    for key in ("val/acc_best", "test/acc", "test/acc_per_class_mean", "test/loss"):
        assert a["metrics"][key] == b["metrics"][key], key
