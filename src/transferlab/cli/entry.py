"""``train.py`` / ``eval.py``: check the overrides (one line for a mistake, before torch and
Lightning are imported), then hand the run to Hydra and :mod:`transferlab.cli.job`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import DictConfig, OmegaConf

from transferlab.core.config import (
    CONFIG_GROUPS,
    available_options,
    config_dir,
    register_resolvers,
    share_run_id,
)
from transferlab.core.errors import ConfigError
from transferlab.core.overrides import expand_overrides, publish_inapplicable
from transferlab.core.schema import closest

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


def _main(config_name: str) -> None:
    try:
        multirun = any(a in _PLAIN_FLAGS for a in sys.argv[1:])
        args, inapplicable = expand_overrides(config_name, sys.argv[1:], multirun)
        sys.argv[1:] = args
        publish_inapplicable(inapplicable)
        check_group_choices(sys.argv[1:])
        check_override_keys(config_name, sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    # torch and Lightning load here, once the command line is known to be valid
    from transferlab.cli.job import guarded_task  # noqa: PLC0415
    from transferlab.tasks.distributed import rank_child_overrides  # noqa: PLC0415

    share_run_id()  # the processes this command starts (workers, DDP ranks) use its run dir
    sys.argv += rank_child_overrides()
    kind = "eval" if config_name == "eval" else "train"
    app = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(
        guarded_task(kind)
    )
    app()


def train_main() -> None:
    """``python train.py [overrides]``: train and test one configuration (or a multirun)."""
    _main("train")


def eval_main() -> None:
    """``python eval.py ckpt_path=...``: evaluate a checkpoint on the target test split."""
    _main("eval")
