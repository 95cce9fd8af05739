"""Hydra callbacks registered in ``conf/hydra/default.yaml``: a writable run directory before
Hydra creates it, and a summary of a multirun's jobs at its end."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, OmegaConf

from transferlab.core.errors import storage_line
from transferlab.core.results import RESULTS_FILE, read_results, run_hash
from transferlab.core.store import ensure_writable_dir

# why each job of this process's multirun failed, by output directory (jobs run in this
# process; jobs of other processes are read from their results files)
JOB_ERRORS: dict[str, str] = {}


def _job_dirs(sweep: Path, since: float) -> list[Path]:
    """The job directories of the multirun that started at ``since`` (Hydra writes each job's
    ``.hydra/config.yaml`` when the job starts)."""
    found = {p.parent.parent for p in sweep.rglob(".hydra/config.yaml")}
    return sorted(
        (d for d in found if (d / ".hydra" / "config.yaml").stat().st_mtime >= since - 1),
        key=lambda d: (len(d.parts), [int(x) if x.isdigit() else x for x in d.parts]),
    )


def _job_failure(job: Path, sweep: Path, since: float) -> str | None:
    """Why the job in ``job`` failed, or None when it finished (or was skipped as finished)."""
    job_cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
    digest = run_hash(job_cfg)
    results = job / RESULTS_FILE
    record = None
    if results.is_file() and results.stat().st_mtime >= since - 1:
        try:
            record = read_results(results)
        except (OSError, ValueError):
            return f"its {RESULTS_FILE} cannot be read"
    if record is not None and record.get("run_hash") in (digest, None):
        if record.get("status") == "failed":
            return str(record.get("error") or "failed")
        return None
    # (the finished-run search reads checkpoints: loaded when a job asked to resume)
    from transferlab.tasks.resume import find_finished  # noqa: PLC0415

    if job_cfg.get("resume") and find_finished(sweep, digest) is not None:
        return None  # skipped: this configuration had finished
    return JOB_ERRORS.get(str(job.resolve())) or (
        f"it wrote no {RESULTS_FILE} (refused, killed or crashed: see its log in {job})"
    )


def _job_overrides(job: Path) -> list[str]:
    try:
        return [str(v) for v in OmegaConf.load(job / ".hydra" / "overrides.yaml")]
    except Exception:  # noqa: BLE001 - a label is a nicety
        return []


def _job_labels(jobs: Sequence[Path], sweep: Path) -> dict[Path, str]:
    """Each job's directory name with the overrides that tell it from the other jobs."""
    overrides = {job: _job_overrides(job) for job in jobs}
    shared = set.intersection(*(set(v) for v in overrides.values())) if len(jobs) > 1 else set()
    labels = {}
    for job, values in overrides.items():
        own = [v for v in values if v not in shared]
        name = str(job.relative_to(sweep))
        labels[job] = f"{name} ({' '.join(own)})" if own else name
    return labels


def _summary_table(jobs: Sequence[Path], labels: dict[Path, str], failed: dict[Path, str]) -> str:
    """One row per job: its label, status and test accuracy (from its results file)."""
    rows = []
    for job in jobs:
        try:
            record = read_results(job / RESULTS_FILE)
        except (OSError, ValueError):
            record = {}
        status = "failed" if job in failed else str(record.get("status", "?"))
        metrics = record.get("metrics", {})
        metric = next(
            (f"{k} {metrics[k]:.4f}" for k in ("test/acc", "test/zsl_acc") if k in metrics), ""
        )
        rows.append((labels[job], status, metric))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {label:<{width}}  {status:<10} {metric}" for label, status, metric in rows)


class MultirunSummary(HydraCallback):
    """Registered in ``conf/hydra/default.yaml``: after a multirun, one summary of its jobs.
    When any failed, it lists which and why (each failed job's ``results.json`` holds its
    error) and ends the command with exit status 1."""

    def __init__(self) -> None:
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        JOB_ERRORS.clear()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        if not sweep.is_dir():
            return
        jobs = _job_dirs(sweep, self.started)
        failed = [(job, why) for job in jobs if (why := _job_failure(job, sweep, self.started))]
        labels = _job_labels(jobs, sweep)
        if jobs:
            print(_summary_table(jobs, labels, dict(failed)))
        if not failed:
            if jobs:
                print(f"multirun: all {len(jobs)} jobs finished ({sweep})")
                print(f"table with mean ± std over seeds: transferlab report {sweep}")
            return
        lines = [f"multirun: {len(failed)} of {len(jobs)} jobs failed ({sweep}):"]
        lines += [f"  job {labels[job]}: {why}" for job, why in failed]
        names = (
            "job"
            + ("s " if len(failed) > 1 else " ")
            + ", ".join(str(j.relative_to(sweep)) for j, _ in failed)
        )
        lines.append(
            f"error: {len(failed)} of {len(jobs)} jobs of the multirun failed ({names}): "
            f"{failed[0][1][:200]}"
        )
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(1)


class OutputDirCheck(HydraCallback):
    """Registered in ``conf/hydra/default.yaml``: before Hydra creates the run (or sweep)
    directory, make sure it can: a read-only or full root is one ``error:`` line and exit
    status 1, not Hydra's traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_output_dir(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_output_dir(config.hydra.sweep.dir)


_RUN_DIR_PLACES = "point TRANSFERLAB_ROOT (paths.root_dir) or hydra.run.dir at a writable directory"


def _check_output_dir(directory: Any) -> None:
    try:
        ensure_writable_dir(Path(str(directory)))
    except OSError as err:
        line = storage_line(err, "cannot write the run directory", writable=_RUN_DIR_PLACES)
        print(f"error: {line}", file=sys.stderr)
        raise SystemExit(1) from None
