"""What was run: config fingerprints, debug runs, and the cells a table averages over.

A cell averages only runs whose resolved configs (the record's ``config``) are the same except for
the seed and the keys in :data:`RUN_LOCAL_CONFIG_KEYS`. Cells that share a row label (the values
of the display keys, e.g. ``finetune/full``) are named apart by the config keys in which they
differ (``finetune/full lr=0.01``). With explicit group keys (``pool=True``) a cell holds every
run with its group values, and :attr:`Cell.pooled` says which config keys it pooled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from transferlab.core.errors import ConfigError
from transferlab.core.results import DEBUG_STATUS, is_debug_trainer
from transferlab.core.store import LATE_DEFAULTS
from transferlab.report.runs import (
    PATH_KEY,
    format_value,
    get_key,
    group_key,
    hashable,
    is_completed,
    method_label,
    metric_value,
)

# Config keys that say where a run reads or writes, how it logs or how it was started, never what
# it computes: left out of the fingerprint that decides which runs a cell may average. Dotted
# paths; a pattern also covers every key under it, and ``*`` matches any name. Keep in step with
# transferlab.sweeps.RUN_LOCAL_KEYS (the run hash). Data locations (``data.root``) are kept: for
# ``data=image_folder`` the root *is* the data set.
RUN_LOCAL_CONFIG_KEYS = (
    "seed",  # the repeat axis of a cell (copies of it elsewhere: see seed_aliases)
    "paths",  # root, data, log, cache and output directories
    "hydra",
    "ckpt_path",
    "print_config",
    "resume",
    "tags",
    "task_name",
    "logger",  # loggers and their save_dir
    "callbacks.*.dirpath",  # checkpoint directories (the callbacks' settings are kept)
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "source.cache_dir",  # where a built source is cached, not what it is
)
DEBUG_LEAF = "debug"  # the fingerprint key that keeps included debug runs in their own rows
_NOT_A_SETTING = ("seed", "tags", "source_key")
_ABSENT = "<absent>"
_SEED_ALIAS = "<seed>"


def is_debug(run: Mapping[str, Any]) -> bool:
    """A debug run: status ``debug``, or (older records) a config with a truthy
    ``trainer.fast_dev_run`` or ``overfit_batches``, or a ``trainer.limit_*_batches`` below
    everything (a fraction under 1.0, or an int, which Lightning reads as a batch count)."""
    if run.get("status") == DEBUG_STATUS:
        return True
    config = run.get("config")
    trainer = config.get("trainer") if isinstance(config, Mapping) else None
    return isinstance(trainer, Mapping) and is_debug_trainer(trainer)


def is_run_local(key: str) -> bool:
    return any(
        fnmatchcase(key, pattern) or fnmatchcase(key, pattern + ".*")
        for pattern in RUN_LOCAL_CONFIG_KEYS
    )


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists as tuples; an empty mapping is one leaf)."""
    if not isinstance(config, Mapping) or (prefix and not config):
        return {prefix: hashable(config)} if prefix else {}
    leaves: dict[str, Any] = {}
    for key, value in config.items():
        leaves.update(flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return leaves


def _same_as_seed(value: Any, seed: Any) -> bool:
    if isinstance(value, bool) or isinstance(seed, bool):
        return False
    return type(value) is type(seed) and value == seed


def _config(run: Mapping[str, Any]) -> Mapping[str, Any]:
    """The run's config; a record without one (hand-made, older) is told apart by its identity
    keys, less the seed and the per-seed source key."""
    config = run.get("config")
    if isinstance(config, Mapping) and config:
        return config
    identity = run.get("identity")
    if not isinstance(identity, Mapping):
        return {}
    return {"identity": {k: v for k, v in identity.items() if k not in _NOT_A_SETTING}}


def config_leaves(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each run's config as dotted leaves, without the run-local keys; a leaf named like a seed
    that equals the run's seed in every run that has it (``source.target.seed: ${seed}``) is a
    copy of the seed and reads ``<seed>`` (a fixed ``source.seed: 0`` stays a value); an
    option of :data:`LATE_DEFAULTS` missing from a run that predates it reads its default."""
    leaves = [
        {k: v for k, v in flatten(_config(run)).items() if not is_run_local(k)} for run in runs
    ]
    seeds = [get_key(run, "seed") for run in runs]
    candidates = {k for one in leaves for k in one if "seed" in k.rsplit(".", 1)[-1]}
    aliases = {
        k
        for k in candidates
        if all(_same_as_seed(one[k], s) for one, s in zip(leaves, seeds) if k in one)
    }
    for one in leaves:
        for k in aliases & one.keys():
            one[k] = _SEED_ALIAS
    # an option given by its bare name (strategy.peft=bitfit) is the same choice as a mapping's
    # name (strategy.peft={name: lora, rank: 4}): one key, so rows are named alike
    choices = {k[: -len(".name")] for one in leaves for k in one if k.endswith(".name")}
    for one in leaves:
        for k in choices & one.keys():
            if isinstance(one[k], str):
                one[k + ".name"] = one.pop(k)
    # an option added later reads as its old behaviour in the runs made before it existed
    for one in leaves:
        for section, defaults in LATE_DEFAULTS.items():
            if any(k.startswith(section + ".") for k in one):
                for key, value in defaults.items():
                    one.setdefault(f"{section}.{key}", value)
    return leaves


def fingerprint_id(leaves: Mapping[str, Any]) -> str:
    """A short stable id of a set of config leaves."""
    text = json.dumps(sorted(leaves.items()), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def differing_keys(leaf_sets: Iterable[Mapping[str, Any]]) -> list[str]:
    """The keys whose values (or presence) differ among ``leaf_sets``, sorted."""
    sets = list(leaf_sets)
    keys = sorted({k for one in sets for k in one})
    return [k for k in keys if len({hashable(one.get(k, _ABSENT)) for one in sets}) > 1]


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that tells it apart from the others
    (``strategy.optimizer.lr`` -> ``lr``)."""
    names: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            others = [o for o in keys if o != key and (o == tail or o.endswith("." + tail))]
            if not others:
                break
        names[key] = tail
    return names


def collapse_choices(keys: Sequence[str], leaf_sets: Sequence[Mapping[str, Any]]) -> list[str]:
    """``keys`` less those under a config group whose chosen option differs (``source.name``
    among ``keys``) that only follow that choice: rows are then named ``source=gan``, not by
    every key of the GAN source's config. A key under the group that also differs among runs
    with the same choice stays."""
    choices = {k[: -len(".name")] for k in keys if k.endswith(".name")}
    kept = []
    for key in keys:
        groups = [g for g in choices if key.startswith(g + ".") and key != g + ".name"]
        if groups and all(_follows_choice(key, g, leaf_sets) for g in groups):
            continue
        kept.append(key)
    return kept


def _follows_choice(key: str, group: str, leaf_sets: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``key`` takes one value among the runs that share ``group``'s chosen option."""
    by_choice: dict[Any, set[Any]] = {}
    for one in leaf_sets:
        values = by_choice.setdefault(hashable(one.get(group + ".name", _ABSENT)), set())
        values.add(hashable(one.get(key, _ABSENT)))
    return all(len(values) == 1 for values in by_choice.values())


def choice_names(keys: Sequence[str]) -> dict[str, str]:
    """:func:`short_names`, with a chosen option ``source.name`` shown as its group
    (``source``) wherever that is unambiguous."""
    names = short_names(keys)
    groups = [k[: -len(".name")] for k in keys if k.endswith(".name")]
    group_names = short_names(groups)
    taken = set(names.values())
    for group in groups:
        if group_names[group] not in taken:
            names[group + ".name"] = group_names[group]
    return names


def _text(value: Any, exact: bool) -> str:
    if value is None:  # a config value, as Hydra writes it (a budget's None reads "all")
        return "null"
    if isinstance(value, float):
        return repr(value) if exact else f"{value:.4g}"
    return format_value(value)


@dataclass
class Cell:
    """The runs one table cell is made of (one configuration, over seeds, unless pooled)."""

    method: str  # the row name: the label of the display keys, then the variant
    label: str  # the label of the display keys alone (``finetune/full``)
    budget: Any
    key: dict[str, Any]  # the display keys' values
    variant: dict[str, Any] = field(default_factory=dict)  # config key -> value naming the row
    fingerprint: str | None = None  # None when pooled
    pooled: list[str] = field(default_factory=list)  # config keys that differ inside the cell
    runs: list[Mapping[str, Any]] = field(default_factory=list)
    leaves: list[dict[str, Any]] = field(default_factory=list)  # one per run

    def finished(self, metric: str) -> list[Mapping[str, Any]]:
        """The runs that finished with a value of ``metric`` (the ones that are averaged)."""
        return [r for r in self.runs if is_completed(r) and metric_value(r, metric) is not None]


def _name_rows(cells: list[Cell], exact: bool = False, unset: bool = False) -> None:
    """Name each cell by its label and the config keys that tell it apart from the cells of
    the same label. An option left unset (null) under a chosen option (``rank=null`` beside
    ``peft=none``) is left out of the name unless that makes two names equal (``unset``: keep
    it); ``exact``: floats in full, where 4 digits make two names equal."""
    by_label: dict[str, list[Cell]] = {}
    for cell in cells:
        by_label.setdefault(cell.label, []).append(cell)
    for label, members in by_label.items():
        by_budget: dict[Any, list[Cell]] = {}
        for cell in members:
            by_budget.setdefault(hashable(cell.budget), []).append(cell)
        keys = sorted(
            {
                k
                for same in by_budget.values()
                if len(same) > 1
                for k in differing_keys(c.leaves[0] for c in same)
            }
        )
        keys = collapse_choices(keys, [c.leaves[0] for c in members])
        names = choice_names(keys)
        choices = [k[: -len(".name")] for k in keys if k.endswith(".name")]
        for cell in members:
            leaves = cell.leaves[0]
            cell.variant = {k: leaves[k] for k in keys if k in leaves}
            parts = [
                names[k] if k == DEBUG_LEAF else f"{names[k]}={_text(v, exact)}"
                for k, v in cell.variant.items()
                if unset or v is not None or not any(k.startswith(g + ".") for g in choices)
            ]
            cell.method = " ".join([label, *parts])
        seen = {(c.method, hashable(c.budget)) for c in members}
        if len(seen) < len(members) and not unset:  # leaving out unset options made names equal
            _name_rows(members, exact, unset=True)
        elif len(seen) < len(members) and not exact:  # values equal to 4 digits: exact values
            _name_rows(members, exact=True, unset=True)


def make_cells(
    runs: Sequence[Mapping[str, Any]],
    group_by: Sequence[str],
    budget_key: str | None,
    pool: bool = False,
) -> list[Cell]:
    """Sort ``runs`` into cells: by the values of ``group_by`` and, unless ``pool``, by their
    config fingerprint. Included debug runs (see :func:`is_debug`) are always apart from the
    others unless pooled. ``budget_key`` must be in ``group_by`` or None."""
    runs = list(runs)
    leaves = config_leaves(runs)
    for run, one in zip(runs, leaves):
        if is_debug(run):
            one[DEBUG_LEAF] = True
    cells: dict[tuple, Cell] = {}
    for run, one in zip(runs, leaves):
        key = dict(zip(group_by, group_key(run, group_by, budget_key)))
        label = method_label(key, budget_key)
        budget = key.get(budget_key) if budget_key else None
        fp = None if pool else fingerprint_id(one)
        cell = cells.get((label, hashable(budget), fp))
        if cell is None:
            cell = Cell(method=label, label=label, budget=budget, key=key, fingerprint=fp)
            cells[(label, hashable(budget), fp)] = cell
        cell.runs.append(run)
        cell.leaves.append(one)
    result = list(cells.values())
    if pool:
        for cell in result:
            cell.pooled = differing_keys(cell.leaves)
    else:
        _name_rows(result)
    return result


def check_repeated_seeds(cells: Sequence[Cell], metric: str, budget_key: str | None) -> None:
    """Raise ConfigError when two finished runs of one configuration have the same seed."""
    problems = []
    for cell in cells:
        seen: dict[tuple[str, Any], list[str]] = {}
        for run, one in zip(cell.runs, cell.leaves):
            seed = get_key(run, "seed")
            if seed is None or not (is_completed(run) and metric_value(run, metric) is not None):
                continue
            seen.setdefault((fingerprint_id(one), hashable(seed)), []).append(str(run[PATH_KEY]))
        for (_, seed), paths in seen.items():
            if len(paths) > 1:
                where = cell.method + (
                    f", {budget_key}={format_value(cell.budget)}" if budget_key else ""
                )
                problems.append(f"seed {format_value(seed)} of {where}: {', '.join(paths)}")
    if problems:
        raise ConfigError(
            "runs with the same config repeat a seed (a cell averages one run per seed; "
            f"delete or move the extra runs): {'; '.join(problems)}"
        )


def mixed_identity_keys(cells: Sequence[Cell], keys: Sequence[str]) -> list[str]:
    """The identity ``keys`` whose values differ inside some cell."""
    return [
        key
        for key in keys
        if any(len({hashable(get_key(r, key)) for r in cell.runs}) > 1 for cell in cells)
    ]
