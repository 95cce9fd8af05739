"""Sweeps: a failing job is recorded and the sweep goes on; an interrupted sweep resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import cli_command, cli_env, run_cli

from transferlab.core.results import run_hash
from transferlab.tasks.resume import find_finished


def _sweep_args(sweep_dir: Path, *args: str) -> tuple[str, ...]:
    """``train.py`` arguments of a quiet multirun writing into ``sweep_dir``."""
    return (
        "-m",
        "print_config=false",
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={sweep_dir}",
        *args,
    )


def _records(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/results.json")}


def test_run_hash_ignores_paths_and_run_options(make_cfg, tmp_path) -> None:
    base = run_hash(make_cfg("seed=1", out=tmp_path / "a"))
    assert base == run_hash(
        make_cfg("seed=1", "resume=true", "print_config=false", out=tmp_path / "b")
    )
    assert base != run_hash(make_cfg("seed=2", out=tmp_path / "a"))
    assert find_finished(tmp_path / "nothing-here", base) is None


def test_failed_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train.py",
        *_sweep_args(sweep, "data.labels_per_class=5,500", "debug=fast_dev_run"),
        root=tmp_path,
        timeout=300,
    )
    # every job ran; the command then says which failed and why, and exits 1
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "error: 1 of 2 jobs of the multirun failed (job 1)" in proc.stderr
    records = _records(sweep)
    assert records["0"]["status"] == "debug"  # fast_dev_run: a debugging run
    assert records["1"]["status"] == "failed"
    assert "labels_per_class=500" in records["1"]["error"]
    assert records["1"]["identity"]["labels_per_class"] == 500


@pytest.mark.slow  # 37-55 s on 2 cores: in the slow suite (CI runs it)
def test_killed_sweep_resumes_only_the_missing_runs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ("seed=0,1,2,3", "trainer.max_epochs=15")
    first = subprocess.Popen(
        cli_command("train.py", *_sweep_args(sweep, *args)),
        env=cli_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while len(_records(sweep)) < 2 and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    done_before = {k: v["run_hash"] for k, v in _records(sweep).items()}
    assert 2 <= len(done_before) < 4, "the sweep should have been cut off half way"
    stamps = {k: (sweep / k / "results.json").stat().st_mtime_ns for k in done_before}

    second = run_cli(
        "train.py", *_sweep_args(sweep, *args, "resume=true"), root=tmp_path, timeout=300
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("skipped: this configuration already finished") == len(done_before)
    records = _records(sweep)
    assert sorted(records) == ["0", "1", "2", "3"]
    assert all(r["status"] == "completed" and r["epochs_trained"] == 15 for r in records.values())
    for key, stamp in stamps.items():  # finished runs were not run again
        assert (sweep / key / "results.json").stat().st_mtime_ns == stamp


def test_an_evaluation_is_identified_by_its_checkpoint() -> None:
    """A training run's ``ckpt_path`` is its resume point (the same run); an evaluation's is
    what it measures: evaluations of two checkpoints are two runs, not one repeated."""
    train = {"task_name": "train", "seed": 0, "data": {"name": "digits"}}
    assert run_hash({**train, "ckpt_path": "a/last.ckpt"}) == run_hash(
        {**train, "ckpt_path": "b/last.ckpt"}
    )
    evaluation = {"task_name": "eval", "seed": 0, "data": {"shift": {"noise_std": 0.2}}}
    assert run_hash({**evaluation, "ckpt_path": "a/best.ckpt"}) != run_hash(
        {**evaluation, "ckpt_path": "b/best.ckpt"}
    )
