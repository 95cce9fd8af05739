"""Command-line entry points: ``train.py`` / ``transferlab-train`` and ``eval.py``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

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
from transferlab.core.schema import RunOptions, check_model, closest
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


# Hydra flags that take no value (others, e.g. --config-name X, leave the check to Hydra)
_PLAIN_FLAGS = ("-m", "--multirun")


def _first_values(overrides: Sequence[str]) -> list[str]:
    """The overrides with each sweep at its first value (``seed=0,1,2`` -> ``seed=0``); Hydra's
    own keys and sweeps without a first value (Optuna intervals) left out."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as err:
        raise ConfigError(
            f"cannot read the overrides: {str(err).strip().splitlines()[0]}"
        ) from None
    single = []
    for override in parsed:
        if override.key_or_group.split(".")[0] == "hydra":
            continue
        if not override.is_sweep_override():
            single.append(override.input_line)
            continue
        try:
            first = next(iter(override.sweep_string_iterator()))
        except Exception:  # noqa: BLE001 - interval sweeps and the like have no first value
            continue
        single.append(f"{override.get_key_element()}={first}")
    return single


def check_override_keys(config_name: str, args: Sequence[str]) -> None:
    """Compose the config as Hydra will (sweeps at their first value) and turn a composition
    error into one line; a misspelt key (``trainer.max_epoch=3``) gets the closest real key."""
    if any(a.startswith("-") and a not in _PLAIN_FLAGS for a in args):
        return
    overrides = _first_values([a for a in args if not a.startswith("-")])
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        try:
            compose(config_name, overrides=overrides)
            return
        except Exception as err:  # noqa: BLE001 - composition fails in many types
            message = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            key = message.split("'")[1] if message.startswith("Could not override '") else None
            if key is None:
                raise ConfigError(f"invalid override: {message[:300]}") from None
        parent = key.rpartition(".")[0]
        rest = [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")]
        node = compose(config_name, overrides=rest)
        node = OmegaConf.select(node, parent) if parent else node
        keys = list(node.keys()) if isinstance(node, DictConfig) else []
    hint = closest(key, [f"{parent}.{k}" if parent else str(k) for k in keys])
    raise ConfigError(f"{key} is not a config key{hint}; to add a new key write +{key}=...")


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
            check_model(RunOptions, "", to_plain(cfg))
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
        check_override_keys(config_name, sys.argv[1:])
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
