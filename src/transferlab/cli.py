"""Command-line entry points: ``train.py`` / ``transferlab-train`` and ``eval.py``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from transferlab.config import (
    CONFIG_GROUPS,
    available_options,
    config_dir,
    print_config_tree,
    register_resolvers,
)
from transferlab.errors import ConfigError, TransferlabError

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


def _guarded(task: Callable[[DictConfig, Path], dict[str, Any]]) -> Callable[[DictConfig], Any]:
    def run(cfg: DictConfig) -> float | None:
        output_dir = _output_dir()
        if cfg.get("print_config", True):
            print_config_tree(cfg, save_to=output_dir / "config_tree.log")
        try:
            record = task(cfg, output_dir)
        except TransferlabError as err:
            log.error("%s", err)
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
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
    app = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(
        _guarded(task)
    )
    app()


def train_main() -> None:
    """``python train.py [overrides]``: train and test one configuration (or a multirun)."""
    from transferlab.pipeline import run_training

    _main("train", run_training)


def eval_main() -> None:
    """``python eval.py ckpt_path=...``: evaluate a checkpoint on the target test split."""
    from transferlab.pipeline import run_evaluation

    _main("eval", run_evaluation)
