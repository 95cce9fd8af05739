"""One Hydra job of ``train.py`` / ``eval.py``: claim the run directory, run the task, write
and print its results; a failure is one line (and, in a multirun, a failure record)."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from transferlab.cli.callbacks import JOB_ERRORS
from transferlab.core.config import (
    print_config_tree,
)
from transferlab.core.console import configure_console
from transferlab.core.errors import (
    ConfigError,
    TransferlabError,
    storage_error,
    storage_line,
)
from transferlab.core.overrides import drop_inapplicable
from transferlab.core.results import (
    RESULTS_FILE,
    config_differences,
    describe_differences,
    path_keys,
    read_results,
    run_hash,
    run_identity,
    write_results,
)
from transferlab.core.schema import RunOptions, check_model
from transferlab.tasks import run_evaluation, run_training, to_plain
from transferlab.tasks.checkpoints import load_training_checkpoint
from transferlab.tasks.distributed import (
    is_global_zero,
    launched_rank,
    processes_created_externally,
)
from transferlab.tasks.resume import (
    REPLACEABLE_STATUSES,
    RunDirectoryError,
    check_fresh_directory,
    check_results_slot,
    choose_checkpoint,
    find_finished,
)

log = logging.getLogger("transferlab")


def _output_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def _print_summary(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    identity = record["identity"]
    title = (
        f"{identity['strategy']}"
        f"{'/' + identity['mode'] if identity.get('mode') else ''} {identity['model']} on "
        f"{identity['dataset']} (labels/class={identity['labels_per_class']}, "
        f"seed={identity['seed']})"
    )
    Console().print(f"target test metrics: {title}", soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in record["metrics"].items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    table.add_row("wall time (s)", f"{record['wall_time_s']:.1f}")
    Console().print(table)


def _job_line(record: dict[str, Any], output_dir: Path) -> str:
    """One line for a finished multirun job: its number, overrides, status and metrics."""
    hydra_cfg = HydraConfig.get()
    metrics = record.get("metrics", {})
    shown = [
        f"{key} {metrics[key]:.4f}"
        for key in ("test/acc", "test/zsl_acc", "test/gzsl_h", "val/acc_best")
        if isinstance(metrics.get(key), float)
    ]
    return (
        f"job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}): "
        f"{record.get('status', 'completed')}, {', '.join(shown) or 'no metrics'}, "
        f"{record.get('wall_time_s', 0.0):.1f} s -> {output_dir}"
    )


def _in_multirun() -> bool:
    return HydraConfig.get().mode == RunMode.MULTIRUN


def _sweep_dir() -> Path:
    return Path(HydraConfig.get().sweep.dir)


def _checks_directory() -> bool:
    """Whether this process checks the run directory: not a rank Lightning started by re-running
    the command (its rank 0 did, and is writing into the directory by then)."""
    return launched_rank() == 0 or processes_created_externally()


def _claim_run_directory(cfg: DictConfig, output_dir: Path) -> dict[str, Any] | None:
    """Bind ``output_dir`` to this configuration before anything is written there.

    With ``resume=true``: the finished record of this configuration in the sweep (or run)
    directory, to skip it; else ``None`` after pointing ``ckpt_path`` at the newest readable
    checkpoint of this configuration in the directory (if any). Another configuration's
    results or checkpoints in the directory are an error naming the differing keys, and so,
    without ``resume``, are any results or checkpoints of an earlier run: nothing is
    overwritten."""
    digest, plain, paths = run_hash(cfg), to_plain(cfg), path_keys(cfg)
    resume = bool(cfg.get("resume"))
    if resume:
        finished = find_finished(_sweep_dir() if _in_multirun() else output_dir, digest)
        if finished is not None:
            return read_results(finished)
    if _checks_directory():
        check_results_slot(output_dir, digest, plain, paths)
        if not resume:
            check_fresh_directory(output_dir, cfg.get("ckpt_path"))
    if not resume or cfg.get("ckpt_path") is not None:  # an explicit checkpoint wins
        return None
    point = choose_checkpoint(output_dir, digest, plain, paths)
    for note in point.notes:
        print(note)
    if point.checkpoint is not None:
        print(
            f"resuming the interrupted run from {point.checkpoint} "
            f"(epoch {point.epoch}, step {point.step})"
        )
        with open_dict(cfg):
            cfg.ckpt_path = str(point.checkpoint)
    return None


def _replaceable(output_dir: Path, digest: str) -> bool:
    """Whether a failure record may be written: no results there, or this configuration's
    unfinished ones."""
    path = output_dir / RESULTS_FILE
    if not path.exists():
        return True
    try:
        record = read_results(path)
    except (OSError, ValueError):
        return False
    return record.get("run_hash") == digest and record.get("status") in REPLACEABLE_STATUSES


def _record_failure(cfg: DictConfig, output_dir: Path, err: BaseException) -> None:
    """Write a ``failed`` results file so the sweep's report lists this run (never over another
    run's results, and never failing itself: the disk may be full)."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    record: dict[str, Any] = {
        "status": "failed",
        "task": cfg.get("task_name"),
        "error": f"{type(err).__name__}: {message}"[:500],
        "run_hash": run_hash(cfg),
        "metrics": {},
    }
    try:
        plain = to_plain(cfg)
        record["identity"] = run_identity(plain, {"source": plain["source"].get("name")})
        record["config"] = plain
    except Exception:  # the record of a failure must not fail itself
        pass
    if not _replaceable(output_dir, record["run_hash"]):
        return
    try:
        write_results(output_dir, record)
    except OSError as write_err:
        log.error("could not write the failure record in %s: %s", output_dir, write_err)


# the data keys that do not change which test images a checkpoint is evaluated on
_LOADER_ONLY_DATA_KEYS = (
    "batch_size",
    "eval_batch_size",
    "num_workers",
    "download",
    "min_samples_per_epoch",
    "augment",
    "labels_per_class",
    "label_fraction",
    "val_per_class",
    "val_fraction",
)


def eval_data_differences(cfg: DictConfig) -> list[tuple[str, Any, Any]]:
    """``eval.py``: the ``data.*`` keys (those that decide the test images) in which the data
    evaluated differs from the data the checkpoint was trained on."""
    _, record = load_training_checkpoint(cfg.ckpt_path)
    trained = dict(record["cfg"].get("data") or {})
    given = {**trained, **(to_plain(cfg.get("data")) or {})}
    return [
        d
        for d in config_differences({"data": trained}, {"data": given})
        if d[0].split(".")[1] not in _LOADER_ONLY_DATA_KEYS
    ]


def _job_failed(output_dir: Path, err: BaseException) -> None:
    """Say (without ``error:``: the multirun's summary is the one error line) that a job
    failed, and remember why for the summary."""
    line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    print(f"job {output_dir.name} failed: {line}", file=sys.stderr)
    JOB_ERRORS[str(output_dir.resolve())] = f"{type(err).__name__}: {line}"[:500]


def _drop_inapplicable_keys(cfg: DictConfig, output_dir: Path) -> None:
    """Drop the sweep-wide keys this job's options lack, with a note; the job's saved
    ``.hydra/config.yaml`` then holds what it ran (its run hash matches its results)."""
    hydra_cfg = HydraConfig.get()
    notes = drop_inapplicable(cfg, hydra_cfg.runtime.choices)
    for note in notes:
        print(note)
    saved = output_dir / str(hydra_cfg.output_subdir or ".hydra") / "config.yaml"
    if notes and saved.is_file():
        OmegaConf.save(cfg, saved)


def _guarded(
    task: Callable[[DictConfig, Path], dict[str, Any]], kind: str = "train"
) -> Callable[[DictConfig], Any]:
    def run(cfg: DictConfig) -> float | None:
        output_dir = _output_dir()
        multirun = _in_multirun()
        if multirun:  # the jobs before this one left their Trainer, module and data in
            gc.collect()  # reference cycles that the collector frees rarely: free them first
        configure_console(quiet=multirun)
        data_differs: list[tuple[str, Any, Any]] = []
        _drop_inapplicable_keys(cfg, output_dir)
        try:
            check_model(RunOptions, "", to_plain(cfg))
            if multirun and kind == "train" and cfg.get("seed", 0) is None:
                raise ConfigError(
                    "seed=null in a multirun: unseeded repeats of one configuration cannot be "
                    "told apart in reports; sweep seeds instead (seed=0,1,2)"
                )
            done = _claim_run_directory(cfg, output_dir)
            if done is not None:
                print(f"skipped: this configuration already finished ({done.get('run_dir', '')})")
                return done.get("metrics", {}).get("val/acc_best")
            if is_global_zero():  # printed for single runs, saved for every run
                print_config_tree(
                    cfg,
                    save_to=output_dir / "config_tree.log",
                    show=bool(cfg.get("print_config", True)) and not multirun,
                )
            if kind == "eval":
                data_differs = eval_data_differences(cfg)
                if data_differs:
                    print(
                        "warning: evaluating on other data than the checkpoint was trained on: "
                        f"{describe_differences(data_differs)}; the results record lists "
                        "these keys under data_differs_from_training",
                        file=sys.stderr,
                    )
            record = task(cfg, output_dir)
            if not is_global_zero():  # a DDP rank > 0: rank 0 reports and writes results
                return None
            if kind == "eval":  # the record says which data it was measured on
                record = {
                    **record,
                    "run_hash": run_hash(cfg),
                    "data_differs_from_training": [d[0] for d in data_differs],
                }
                write_results(output_dir, record)
        except RunDirectoryError as err:  # another run's directory: write nothing into it
            if not multirun:
                print(f"error: {err}", file=sys.stderr)
                sys.exit(1)
            _job_failed(output_dir, err)
            return None
        except TransferlabError as err:
            if not multirun:
                print(f"error: {err}", file=sys.stderr)
                sys.exit(1)
            _job_failed(output_dir, err)
            _record_failure(cfg, output_dir, err)
            return None
        except Exception as err:
            disk = storage_error(err)  # a full, read-only or protected disk: one line
            if not multirun:
                if disk is None:
                    raise
                where = "" if disk.filename else f"writing in {output_dir}"
                print(f"error: {storage_line(disk, where)}", file=sys.stderr)
                sys.exit(1)
            if disk is None:
                log.exception("run failed; the sweep goes on")
            _job_failed(output_dir, disk or err)
            _record_failure(cfg, output_dir, disk or err)
            return None
        if multirun:
            print(_job_line(record, output_dir))
        else:
            _print_summary(record)
            print(f"results: {output_dir / 'results.json'}")
        # the value a Hydra sweeper optimises: a validation metric, never a test metric
        return record["metrics"].get("val/acc_best")

    return run


def guarded_task(kind: str = "train") -> Callable[[DictConfig], Any]:
    """The Hydra task function of ``train.py`` (``kind="train"``) or ``eval.py``."""
    return _guarded(run_evaluation if kind == "eval" else run_training, kind)
