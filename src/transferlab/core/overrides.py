"""Command-line overrides a researcher expects to work, made into ones Hydra accepts.

- Any ``lightning.Trainer`` argument under ``trainer.`` (``trainer.fast_dev_run=true``) is set
  whether or not the chosen ``trainer`` config lists it (rewritten to ``++trainer.X=...``).
- In a sweep over a config group (``-m strategy=finetune,scratch``, or a sweep an experiment
  file declares), a key that only some of the swept options have (``strategy.backbone_lr_ratio``)
  is set where it applies and dropped, with a note, in the jobs where it does not
  (:func:`drop_inapplicable`), instead of aborting the whole sweep.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict

from transferlab.core.config import CONFIG_GROUPS, config_dir

# {group: {option: [keys]}}: the sweep-wide keys that the jobs with ``group=option`` ignore
INAPPLICABLE_ENV = "TRANSFERLAB_INAPPLICABLE_KEYS"
_MISSING = object()


@cache
def trainer_arguments() -> frozenset[str]:
    """The keyword arguments of ``lightning.Trainer``, read from its source file's syntax tree
    (importing Lightning takes seconds; a mistyped override should fail at once)."""
    spec = importlib.util.find_spec("lightning")  # (a submodule's spec imports its parents)
    source = Path(str(spec.origin)).parent / "pytorch" / "trainer" / "trainer.py" if spec else None
    try:
        tree = ast.parse(source.read_text()) if source else None
    except (OSError, SyntaxError, ValueError):
        tree = None
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.ClassDef) and node.name == "Trainer":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    args = [*item.args.args, *item.args.kwonlyargs]
                    return frozenset(a.arg for a in args if a.arg != "self")
    import lightning  # noqa: PLC0415 - the source could not be read: ask the class itself

    params = inspect.signature(lightning.Trainer.__init__).parameters
    return frozenset(name for name in params if name != "self")


def _parse(args: Sequence[str]) -> list[Override] | None:
    try:
        return OverridesParser.create().parse_overrides(list(args))
    except Exception:  # noqa: BLE001 - the key check reports unreadable overrides in one line
        return None


def _plain_key(override: Override) -> str | None:
    """The key of a plain ``a.b=value`` override (no ``+``/``++``/``~``, not a group choice)."""
    if override.is_add() or override.is_force_add() or override.is_delete():
        return None
    key = override.key_or_group
    return key if "." in key and override.package is None else None


def _group_sweeps(
    config_name: str, parsed: Sequence[Override], singles: Sequence[str]
) -> dict[str, list[str]]:
    """Config groups swept by the command line or by the config's sweeper params, composed
    with the command's single-valued overrides ``singles``."""
    sweeps: dict[str, list[str]] = {}
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name, overrides=list(singles), return_hydra_config=True)
        params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    except Exception:  # noqa: BLE001 - composition errors are reported by the key check
        params = {}
    for key, value in params.items():
        if key in CONFIG_GROUPS and isinstance(value, str) and "," in value:
            sweeps[key] = [v.strip() for v in value.split(",")]
    for o in parsed:
        if o.key_or_group in CONFIG_GROUPS and o.is_sweep_override():
            sweeps[o.key_or_group] = [str(v) for v in o.sweep_string_iterator()]
    return sweeps


def _keys_per_option(
    config_name: str, others: Sequence[str], group: str, options: Sequence[str], key: str
) -> dict[str, bool]:
    """Whether ``key`` exists in the composed config for each option of ``group``."""
    found = {}
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for option in options:
            try:
                cfg = compose(config_name, overrides=[*others, f"{group}={option}"])
            except Exception:  # noqa: BLE001 - an unknown option is reported elsewhere
                found[option] = True
                continue
            found[option] = OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING
    return found


def _trainer_additions(config_name: str, parsed: Sequence[Override]) -> set[str]:
    """The ``trainer.X=...`` overrides naming a Trainer argument the composed trainer config
    lacks (they need Hydra's ``++``)."""
    wanted = {}
    for o in parsed:
        key = _plain_key(o)
        if key is not None and key.startswith("trainer.") and key.count(".") == 1:
            if key.split(".", 1)[1] in trainer_arguments():
                wanted[o.input_line] = key.split(".", 1)[1]
    if not wanted:
        return set()
    rest = [
        o.input_line
        for o in parsed
        if o.input_line not in wanted
        and not o.is_sweep_override()
        and "hydra" not in o.key_or_group
    ]
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            present = set(compose(config_name, overrides=rest).get("trainer") or {})
    except Exception:  # noqa: BLE001 - composition errors are reported by the key check
        present = set()
    return {line for line, name in wanted.items() if name not in present}


def expand_overrides(
    config_name: str, args: Sequence[str], multirun: bool
) -> tuple[list[str], dict[str, dict[str, list[str]]]]:
    """The overrides Hydra should get, and the keys each swept option ignores."""
    parsed = _parse([a for a in args if not a.startswith("-")])
    if parsed is None:
        return list(args), {}
    forced = _trainer_additions(config_name, parsed)
    inapplicable: dict[str, dict[str, list[str]]] = {}
    if multirun:
        firsts = [
            f"++{o.input_line}" if o.input_line in forced else o.input_line
            for o in parsed
            if not o.is_sweep_override() and "hydra" not in o.key_or_group
        ]
        sweeps = _group_sweeps(config_name, parsed, firsts)
        for o in parsed:
            key = _plain_key(o)
            group = key.split(".", 1)[0] if key else None
            if key is None or group not in sweeps or o.input_line in forced:
                continue
            others = [f for f in firsts if f != o.input_line and not f.startswith(f"{group}=")]
            found = _keys_per_option(config_name, others, group, sweeps[group], key)
            if any(found.values()) and not all(found.values()):
                forced.add(o.input_line)
                for option, present in found.items():
                    if not present:
                        inapplicable.setdefault(group, {}).setdefault(option, []).append(key)
    rewritten = [f"++{a}" if a in forced else a for a in args]
    return rewritten, inapplicable


def publish_inapplicable(inapplicable: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
    """Hand the keys the jobs must drop to this process and the ones it launches."""
    if inapplicable:
        os.environ[INAPPLICABLE_ENV] = json.dumps(inapplicable)


def drop_inapplicable(cfg: DictConfig, choices: Mapping[str, Any]) -> list[str]:
    """Remove from a job's config the sweep-wide keys its chosen options do not have; return
    one note per dropped key."""
    try:
        table = json.loads(os.environ.get(INAPPLICABLE_ENV, "{}"))
    except json.JSONDecodeError:
        return []
    notes = []
    for group, per_option in table.items():
        option = choices.get(group)
        for key in per_option.get(str(option), []):
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            if isinstance(node, DictConfig) and leaf in node:
                with open_dict(node):
                    del node[leaf]
                notes.append(f"note: {key} does not apply to {group}={option}; ignored in this job")
    return notes
