"""Command-line entry points: ``train.py`` / ``transferlab-train`` and ``eval.py``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from transferlab.core.config import (
    CONFIG_GROUPS,
    available_options,
    config_dir,
    print_config_tree,
    register_resolvers,
    share_run_id,
)
from transferlab.core.errors import ConfigError, TransferlabError
from transferlab.core.results import read_results, run_hash, run_identity, write_results
from transferlab.tasks import run_evaluation, run_training, to_plain
from transferlab.tasks.checkpoints import checkpoint_run_hash
from transferlab.tasks.distributed import is_global_zero, rank_child_overrides
from transferlab.tasks.resume import find_finished, resumable_checkpoint

log = logging.getLogger("transferlab")
register_resolvers()

# groups a user picks on the command line (`model=resnet18`) and what the choice is called
_CHOOSABLE = {g: g for g in CONFIG_GROUPS if g not in ("hydra", "paths")}


def check_group_choices(overrides: Sequence[str]) -> None:
    """Reject an unknown ``group=option`` before Hydra does, with one line naming valid options."""
    for arg in overrides:
        if "=" not in arg or arg.startswith(("-", "hydra.")):
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if key.startswith("override "):
            key = key[len("override ") :]
        key = key.lstrip("/")
        if key not in _CHOOSABLE or value in ("", "null"):
            continue
        options = available_options(key)
        for choice in value.split(","):  # multirun sweeps: strategy=finetune,scratch
            if choice not in options:
                raise ConfigError(f"unknown {key} '{choice}'; valid: {', '.join(options)}")


def check_run_options(cfg: DictConfig) -> None:
    """Top-level options every run has: a clear error for a wrong type."""
    seed = cfg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed={seed!r} is invalid; use an integer (0 is a seed) or null")
    for key in ("test", "resume", "print_config"):
        if not isinstance(cfg.get(key, False), bool):
            raise ConfigError(f"{key}={cfg.get(key)!r} is invalid; use true or false")


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
    table = Table(title=f"target test metrics: {title}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in record["metrics"].items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    table.add_row("wall time (s)", f"{record['wall_time_s']:.1f}")
    Console().print(table)


def _in_multirun() -> bool:
    return HydraConfig.get().mode == RunMode.MULTIRUN


def _resume_or_skip(cfg: DictConfig, output_dir: Path) -> dict[str, Any] | None:
    """With ``resume=true``: the finished record of this configuration (to skip it), or
    ``None`` after pointing ``ckpt_path`` at the run's own ``last.ckpt`` if it was cut off."""
    digest = run_hash(cfg)
    search = Path(HydraConfig.get().sweep.dir) if _in_multirun() else output_dir
    finished = find_finished(search, digest)
    if finished is not None:
        return read_results(finished)
    last = resumable_checkpoint(output_dir)
    if last is not None and cfg.get("ckpt_path") is None and checkpoint_run_hash(last) == digest:
        log.info("resuming the interrupted run from %s", last)
        with open_dict(cfg):
            cfg.ckpt_path = str(last)
    return None


def _record_failure(cfg: DictConfig, output_dir: Path, err: BaseException) -> None:
    """Write a ``failed`` results file so the sweep's report lists this run."""
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
    write_results(output_dir, record)


def _guarded(task: Callable[[DictConfig, Path], dict[str, Any]]) -> Callable[[DictConfig], Any]:
    def run(cfg: DictConfig) -> float | None:
        output_dir = _output_dir()
        if cfg.get("print_config", True) and is_global_zero():
            print_config_tree(cfg, save_to=output_dir / "config_tree.log")
        if cfg.get("resume"):
            done = _resume_or_skip(cfg, output_dir)
            if done is not None:
                print(f"skipped: this configuration already finished ({done.get('run_dir', '')})")
                return done.get("metrics", {}).get("val/acc_best")
        try:
            check_run_options(cfg)
            record = task(cfg, output_dir)
            if not is_global_zero():  # a DDP rank > 0: rank 0 reports and writes results
                return None
        except TransferlabError as err:
            print(f"error: {err}", file=sys.stderr)
            if not _in_multirun():
                sys.exit(1)
            _record_failure(cfg, output_dir, err)
            return None
        except Exception as err:
            if not _in_multirun():
                raise
            log.exception("run failed; the sweep goes on")
            _record_failure(cfg, output_dir, err)
            return None
        _print_summary(record)
        print(f"results: {output_dir / 'results.json'}")
        # the value a Hydra sweeper optimises: a validation metric, never a test metric
        return record["metrics"].get("val/acc_best")

    return run


def _main(config_name: str, task: Callable[[DictConfig, Path], dict[str, Any]]) -> None:
    try:
        check_group_choices(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    share_run_id()  # the processes this command starts (workers, DDP ranks) use its run dir
    sys.argv += rank_child_overrides()
    app = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(
        _guarded(task)
    )
    app()


def train_main() -> None:
    """``python train.py [overrides]``: train and test one configuration (or a multirun)."""
    _main("train", run_training)


def eval_main() -> None:
    """``python eval.py ckpt_path=...``: evaluate a checkpoint on the target test split."""
    _main("eval", run_evaluation)
