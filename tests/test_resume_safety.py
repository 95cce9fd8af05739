"""Fault cases of issue 20 (docs/reliability.md): a run directory belongs to one configuration
(a changed config never overwrites it), checkpoints are written atomically (a full disk keeps
the last good one and resume continues from it), an unreadable ``last.ckpt`` is passed over
with a line, a read-only cache with valid entries is usable, failed multirun jobs fail the
command, results files are strict JSON, and unseeded, untrained or other-data runs say so.

The command-line runs happen in this process (as in tests/test_bad_inputs.py) unless the exit
status of a real process, or a read-only mount, is the point."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli_command, cli_env, drop_stale_log_handlers, run_cli

from transferlab.cli import eval_main, train_main
from transferlab.core.checkpoint import read_checkpoint
from transferlab.core.results import read_results, write_results
from transferlab.sources import cache as source_cache_module
from transferlab.tasks import RunContext, run_training
from transferlab.tasks import checkpoints as checkpoints_module
from transferlab.tasks.checkpoints import AtomicCheckpointIO, stored_run_record

QUIET = ("print_config=false", "trainer.enable_progress_bar=false")
SCRATCH = ("strategy=scratch", "trainer.max_epochs=3")


@pytest.fixture
def cli(tmp_path: Path, source_cache: Path, monkeypatch: pytest.MonkeyPatch, capfd):
    """``cli(*args, entry="train")``: run ``train.py``/``eval.py`` in this process under
    ``tmp_path``; ``(exit code, stdout, stderr)``."""
    monkeypatch.setenv("TRANSFERLAB_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)

    def run(*args: str, entry: str = "train") -> tuple[int, str, str]:
        drop_stale_log_handlers()
        capfd.readouterr()
        script = f"{entry}.py"
        argv = [script, *QUIET, f"paths.cache_dir={source_cache}", *args]
        monkeypatch.setattr(sys, "argv", argv)
        try:
            (train_main if entry == "train" else eval_main)()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        out, err = capfd.readouterr()
        return code, out, err

    return run


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    """The bytes of a run's results file and checkpoints."""
    files = [run_dir / "results.json", *sorted((run_dir / "checkpoints").glob("*"))]
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in files if p.is_file()}


# ------------------------------------------------------------------ a run directory, one config


def test_resume_with_a_changed_config_is_refused_and_the_run_is_byte_identical(
    cli, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    code, _, err = cli(*SCRATCH, f"hydra.run.dir={run_dir}")
    assert code == 0, err[-2000:]
    before = _snapshot(run_dir)
    assert "results.json" in before and "checkpoints/last.ckpt" in before

    code, out, err = cli(
        "strategy=scratch", "trainer.max_epochs=4", "resume=true", f"hydra.run.dir={run_dir}"
    )
    assert code == 1
    (line,) = _errors(err)
    assert "belongs to another configuration: trainer.max_epochs=3 (this run: 4)" in line
    assert "resuming" not in out
    # without resume, another config in the same directory is refused the same way
    code, _, err = cli(*SCRATCH, "strategy.optimizer.lr=0.01", f"hydra.run.dir={run_dir}")
    assert code == 1 and "strategy.optimizer.lr=0.002 (this run: 0.01)" in _errors(err)[0]
    assert _snapshot(run_dir) == before  # byte-identical; no last-v1.ckpt either

    # the same config with resume=true is skipped, not run again
    code, out, _ = cli(*SCRATCH, "resume=true", f"hydra.run.dir={run_dir}")
    assert code == 0 and "skipped: this configuration already finished" in out
    assert _snapshot(run_dir) == before


# ------------------------------------------------------------------ a full disk mid-checkpoint


def _fill_disk_after(calls: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every checkpoint write after the first ``calls`` fail half way with ENOSPC (as a
    full disk does); returns the list of the paths whose write failed."""
    real = checkpoints_module.write_payload
    seen = {"n": 0}
    failed: list[str] = []

    def write_then_fill(checkpoint, handle) -> None:
        seen["n"] += 1
        if seen["n"] <= calls:
            real(checkpoint, handle)
            return
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        failed.append(handle.name)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoints_module, "write_payload", write_then_fill)
    return failed


def _cut_by_a_full_disk(cli, run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3-epoch run whose disk fills during the second epoch's first checkpoint write."""
    failed = _fill_disk_after(2, monkeypatch)  # epoch 0 writes epoch_000.ckpt and last.ckpt
    code, _, err = cli(*SCRATCH, f"hydra.run.dir={run_dir}")
    monkeypatch.undo()  # space returns
    assert code == 1 and failed
    (line,) = _errors(err)
    assert "could not write checkpoint" in line and "No space left on device" in line
    assert "resume=true" in line
    last = run_dir / "checkpoints" / "last.ckpt"
    payload = read_checkpoint(last)  # the previous checkpoint is intact
    assert payload["epoch"] == 0
    assert not list((run_dir / "checkpoints").glob(".*"))  # no temporary file left behind
    assert not (run_dir / "results.json").exists()


def test_disk_full_during_a_checkpoint_write_then_resume_continues_from_the_last_good_one(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    _cut_by_a_full_disk(cli, run_dir, monkeypatch)
    code, out, err = cli(*SCRATCH, "resume=true", f"hydra.run.dir={run_dir}")
    assert code == 0, err[-2000:]
    assert f"resuming the interrupted run from {run_dir / 'checkpoints' / 'last.ckpt'}" in out
    assert "(epoch 0," in out
    record = read_results(run_dir / "results.json")
    assert record["status"] == "completed" and record["epochs_trained"] == 3
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 2
    assert not list((run_dir / "checkpoints").glob("last-v*.ckpt"))


def test_an_unreadable_last_ckpt_is_passed_over_with_a_line(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    _cut_by_a_full_disk(cli, run_dir, monkeypatch)
    last = run_dir / "checkpoints" / "last.ckpt"  # as the old, non-atomic writer left it
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    code, out, err = cli(*SCRATCH, "resume=true", f"hydra.run.dir={run_dir}")
    assert code == 0, err[-2000:]
    assert f"resume: passing over {last} (cannot read checkpoint" in out
    assert "continuing from epoch_000.ckpt instead" in out
    assert "resuming the interrupted run from" in out and "epoch_000.ckpt (epoch 0," in out
    assert read_results(run_dir / "results.json")["epochs_trained"] == 3


def test_a_failed_checkpoint_write_leaves_the_previous_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.ckpt"
    writer = AtomicCheckpointIO()
    writer.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.ones(3)}}, path)
    before = path.read_bytes()
    _fill_disk_after(0, monkeypatch)
    with pytest.raises(Exception, match="No space left on device"):
        writer.save_checkpoint({"epoch": 2, "state_dict": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


# ------------------------------------------------------------------ a read-only shared cache


def test_a_valid_cache_entry_is_read_without_the_write_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = tmp_path / "pretrain-abc"
    built = source_cache_module.get_or_build(
        entry, lambda weights: weights.write_bytes(b"w") and {}
    )
    assert built == (entry, True)

    class NoLock:
        def __init__(self, path: str) -> None:
            raise PermissionError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr(source_cache_module, "FileLock", NoLock)
    assert source_cache_module.get_or_build(entry, lambda w: pytest.fail("rebuilt")) == (
        entry,
        False,
    )
    with pytest.raises(Exception, match="cannot be built in"):
        source_cache_module.get_or_build(tmp_path / "pretrain-other", lambda w: {})


def _read_only(cache: Path, command: list[str]) -> list[str] | None:
    """``command`` run with ``cache`` read-only: a private read-only bind mount when root (the
    permission bits do not bind root), else the permission bits; None when neither works."""
    if os.geteuid() != 0:
        return command
    if shutil.which("unshare") is None:
        return None
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"'
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, str(cache), "true"], capture_output=True
    )
    return (
        ["unshare", "-m", "sh", "-c", script, str(cache), *command]
        if not probe.returncode
        else None
    )


@pytest.mark.slow  # 37-55 s on 2 cores: in the slow suite (CI runs it)
def test_a_read_only_cache_with_a_valid_entry_is_usable(tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache"
    args = (*QUIET, "trainer.max_epochs=2", "source.max_epochs=1")
    first = run_cli("train.py", *args, f"paths.cache_dir={cache}", root=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    files = {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()}

    def read_only_run(*extra: str) -> subprocess.CompletedProcess:
        command = _read_only(cache, cli_command("train.py", *args, *extra))
        if command is None:
            pytest.skip("cannot make a read-only directory for root here (no unshare/mount)")
        return subprocess.run(
            command, env=cli_env(tmp_path), cwd=tmp_path, capture_output=True, text=True
        )

    mode = cache.stat().st_mode
    if os.geteuid() != 0:
        for path in [cache, *cache.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
    try:
        second = read_only_run(f"paths.cache_dir={cache}")
        missing = read_only_run(f"paths.cache_dir={cache}", "source.max_epochs=2")
    finally:
        if os.geteuid() != 0:
            for path in [cache, *cache.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)
            cache.chmod(mode)
    assert second.returncode == 0, second.stderr[-2000:]
    (log,) = [
        p for p in (tmp_path / "logs").rglob("train.log") if "reused from cache" in p.read_text()
    ]
    assert log
    assert {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()} == files
    # an entry that must be built in a read-only cache: one line, not a traceback
    assert missing.returncode == 1
    (line,) = _errors(missing.stderr)
    assert "is missing and cannot be built in" in line and "Traceback" not in missing.stderr


# ------------------------------------------------------------------ real faults (slow)

# train.py whose third checkpoint write (epoch 1; epoch 0 writes epoch_000.ckpt and last.ckpt)
# is killed half way with SIGKILL: no handler, no clean-up runs
KILLED_MID_WRITE = """
import os, signal, sys
from transferlab.tasks import checkpoints
real, calls = checkpoints.write_payload, []

def write_then_die(checkpoint, handle):
    calls.append(1)
    if len(calls) <= 2:
        return real(checkpoint, handle)
    handle.write(b"PK" * 4096)
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)

checkpoints.write_payload = write_then_die
from transferlab.cli import train_main
sys.argv[0] = "train.py"
train_main()
"""


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_then_resume_continues(cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_WRITE, *QUIET, *SCRATCH, f"hydra.run.dir={run_dir}"],
        env=cli_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    folder = run_dir / "checkpoints"
    (leftover,) = folder.glob(".*.tmp")  # the killed write's temporary file, nothing else
    assert read_checkpoint(folder / "last.ckpt")["epoch"] == 0  # the last good one, intact
    code, out, err = cli(*SCRATCH, "resume=true", f"hydra.run.dir={run_dir}")
    assert code == 0, err[-2000:]
    assert f"resume: removed {leftover.name}, left by an interrupted checkpoint write" in out
    assert f"resuming the interrupted run from {folder / 'last.ckpt'} (epoch 0," in out
    assert read_results(run_dir / "results.json")["epochs_trained"] == 3
    assert not list(folder.glob(".*"))


@pytest.mark.slow
def test_a_read_only_root_report_out_and_export_out_are_one_line(cli, tmp_path: Path) -> None:
    code, _, err = cli("strategy=scratch", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}/run")
    assert code == 0, err[-2000:]
    protected = tmp_path / "protected"
    protected.mkdir()
    commands = {
        "train": cli_command("train.py", *QUIET, "strategy=scratch", "trainer.max_epochs=1"),
        "report": cli_command(
            "-m", "transferlab", "report", str(tmp_path / "run"), "--out", str(protected / "r")
        ),
        "export": cli_command(
            "-m",
            "transferlab",
            "export",
            str(tmp_path / "run/checkpoints/last.ckpt"),
            "--out",
            str(protected),
        ),
    }
    if os.geteuid() != 0:
        protected.chmod(0o555)
    for name, command in commands.items():
        wrapped = _read_only(protected, command)
        if wrapped is None:
            pytest.skip("cannot make a read-only directory for root here (no unshare/mount)")
        proc = subprocess.run(
            wrapped, env=cli_env(protected), cwd=tmp_path, capture_output=True, text=True
        )
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, (name, proc.stderr)
        (line,) = _errors(proc.stderr)
        assert "Read-only file system" in line or "Permission denied" in line, line
        assert str(protected) in line, line
    protected.chmod(0o755)
    assert not list(protected.iterdir())


# two runs of train.py in a private mount namespace: the first on a file system too small for
# its second epoch's checkpoint, the second (resume=true) after the file system has grown
FULL_THEN_SPACE = """
dir=$0
mount -t tmpfs -o size=1700k tmpfs "$dir" || exit 99
"$@"; echo "first exit status $?"
mount -o remount,size=64m "$dir"
"$@" resume=true; echo "second exit status $?"
echo RESULTS; cat "$dir/run/results.json"
"""


@pytest.mark.slow
def test_a_real_full_disk_then_resume_after_space_returns(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$0"', str(disk)]
    if shutil.which("unshare") is None or subprocess.run(probe, capture_output=True).returncode:
        pytest.skip("needs root with unshare and mount (a private tmpfs)")
    command = cli_command("train.py", *QUIET, *SCRATCH, f"hydra.run.dir={disk}/run")
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", FULL_THEN_SPACE, str(disk), *command],
        env=cli_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out, err = proc.stdout, proc.stderr
    assert "first exit status 1" in out and "second exit status 0" in out, err[-3000:]
    (line,) = _errors(err)
    assert "could not write checkpoint" in line and "No space left on device" in line
    assert "Traceback" not in err
    assert f"resuming the interrupted run from {disk}/run/checkpoints/last.ckpt (epoch 0," in out
    record = json.loads(out.split("RESULTS\n", 1)[1])
    assert record["status"] == "completed" and record["epochs_trained"] == 3


# ------------------------------------------------------------------ sweeps


@pytest.mark.slow  # about 20 s: a real multirun in a subprocess
def test_a_multirun_with_failed_jobs_exits_non_zero_and_says_which_and_why(
    tmp_path: Path,
) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train.py",
        "-m",
        *QUIET,
        f"hydra.sweep.dir={sweep}",
        "data.labels_per_class=5,500,600",
        "seed=0,1",
        "debug=fast_dev_run",
        root=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1
    (line,) = _errors(proc.stderr)
    assert line.startswith("error: 4 of 6 jobs of the multirun failed (jobs 2, 3, 4, 5)")
    assert f"multirun: 4 of 6 jobs failed ({sweep}):" in proc.stderr
    assert "  job 4 (data.labels_per_class=600 seed=0): DataError: labels_per_class=600" in (
        proc.stderr
    )
    statuses = {p.parent.name: read_results(p)["status"] for p in sweep.glob("*/results.json")}
    assert statuses == {"0": "debug", "1": "debug", **{k: "failed" for k in "2345"}}


# ------------------------------------------------------------------ honest records


def test_results_files_are_strict_json_with_non_finite_values_named(tmp_path: Path) -> None:
    metrics = {"test/acc": 0.5, "test/loss": float("inf"), "val/acc_best": float("nan")}
    path = write_results(tmp_path, {"status": "completed", "metrics": metrics})

    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    record = json.loads(path.read_text(), parse_constant=refuse)
    assert record["metrics"] == {"test/acc": 0.5, "test/loss": None, "val/acc_best": None}
    assert record["non_finite"] == ["metrics.test/loss", "metrics.val/acc_best"]
    legacy = tmp_path / "legacy.json"
    legacy.write_text('{"metrics": {"test/acc": NaN, "test/loss": Infinity}}')
    assert read_results(legacy)["metrics"] == {"test/acc": None, "test/loss": None}


def test_unseeded_and_untrained_runs_are_recorded_as_such(make_cfg, tmp_path: Path) -> None:
    record = run_training(
        make_cfg("seed=null", "strategy=scratch", "trainer.max_epochs=1"), tmp_path
    )
    assert record["identity"]["seed"] == "none" and record["status"] == "completed"
    assert any("seed=null" in note for note in record["notes"])
    ctx = RunContext(make_cfg("strategy=scratch", out=tmp_path / "b"), tmp_path / "b")
    ctx.optimizer_steps = 0  # a fit that took no step (e.g. an empty training loader)
    assert ctx.status() == "untrained" and "untrained" in ctx.notes()[0]


def test_eval_on_other_classes_of_the_same_count_is_labelled(cli, make_cfg, tmp_path: Path) -> None:
    trained = tmp_path / "trained"
    record = run_training(
        make_cfg("strategy=scratch", "trainer.max_epochs=1", out=trained), trained
    )
    checkpoint = record["metrics"]["best_checkpoint"]
    assert stored_run_record(read_checkpoint(checkpoint))["cfg"]["data"]["classes"] == [
        5,
        6,
        7,
        8,
        9,
    ]
    code, _, err = cli(
        f"ckpt_path={checkpoint}",
        "+data.classes=[0,1,2,3,4]",
        f"hydra.run.dir={tmp_path / 'eval'}",
        entry="eval",
    )
    assert code == 0, err[-2000:]
    (warning,) = [line for line in err.splitlines() if line.startswith("warning:")]
    assert "data.classes=[5, 6, 7, 8, 9] (this run: [0, 1, 2, 3, 4])" in warning
    evaluated = read_results(tmp_path / "eval" / "results.json")
    assert evaluated["data_differs_from_training"] == ["data.classes"]
    code, _, err = cli(
        f"ckpt_path={checkpoint}", f"hydra.run.dir={tmp_path / 'same'}", entry="eval"
    )
    assert code == 0 and "warning:" not in err
    assert read_results(tmp_path / "same" / "results.json")["data_differs_from_training"] == []


def test_an_eval_sweep_run_again_with_resume_skips_the_finished_evaluations(
    cli, make_cfg, tmp_path: Path
) -> None:
    # scripts/eval_shifted.sh re-runs its evaluation multirun into the same directory
    trained = tmp_path / "trained"
    record = run_training(
        make_cfg("strategy=scratch", "trainer.max_epochs=1", out=trained), trained
    )
    sweep = tmp_path / "shifted"
    args = (
        f"ckpt_path={record['metrics']['best_checkpoint']}",
        "+data.shift={noise_std:0.2}",
        f"hydra.sweep.dir={sweep}",
    )
    code, _, err = cli(*args, "-m", entry="eval")  # -m last: Hydra's parser wants it there
    assert code == 0, err[-2000:]
    first = (sweep / "0" / "results.json").read_bytes()
    _, out, err = cli(*args, "-m", entry="eval")  # without resume: refused, not overwritten
    assert (sweep / "0" / "results.json").read_bytes() == first
    assert "holds the finished results" in out + err  # the job is reported failed
    code, out, err = cli(*args, "resume=true", "-m", entry="eval")
    assert code == 0, err[-2000:]
    assert "skipped: this configuration already finished" in out + err
    assert (sweep / "0" / "results.json").read_bytes() == first
