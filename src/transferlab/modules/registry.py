"""The strategy registry: a strategy name -> how it runs (its task), whether it starts from a
source, and (for classifier strategies) its LightningModule class.

A classifier strategy registers itself with ``@register_strategy(name, uses_source=...)`` on its
module class; its config keys are the class's constructor arguments (``strategy.<key>``). A
strategy with its own run skeleton (zero-shot, adaptation, GAN-to-GAN transfer) is registered
by its task, with ``module=None``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from transferlab.core.errors import ConfigError
from transferlab.core.registry import Registry
from transferlab.core.schema import check_arguments, closest
from transferlab.models import Backbone
from transferlab.modules.optim import check_optim_config

# keys of the ``strategy`` config node that are not constructor arguments: the name, and the
# frozen-feature cache setting the classify task reads (tasks/frozen_features.py)
NON_OPTION_KEYS = ("name", "feature_cache")
# what the run (not the config) hands to every classifier module
CONTEXT_ARGS = ("backbone", "num_classes", "class_names", "input_shape")


@dataclass(frozen=True)
class StrategySpec:
    """How a strategy runs: the task (run skeleton) that runs it, its module class (classifier
    strategies), whether it starts from a source and the one source kind it needs (if any)."""

    module: type | None
    uses_source: bool
    task: str = "classify"
    required_source: str | None = None

    def constructors(self) -> list[Callable[..., Any]]:
        """The ``__init__`` of the module class and of its transferlab base classes."""
        classes = self.module.__mro__ if self.module is not None else ()
        return [
            c.__dict__["__init__"]
            for c in classes
            if "__init__" in c.__dict__ and c.__module__.startswith("transferlab.")
        ]

    def parameters(self) -> list[str]:
        """Every keyword its module's constructors (along the class hierarchy) take."""
        names: list[str] = []
        for init in self.constructors():
            for param in inspect.signature(init).parameters.values():
                named = param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD)
                if named and param.name != "self" and param.name not in names:
                    names.append(param.name)
        return names

    def options(self) -> list[str]:
        """The ``strategy.<key>`` settings the module takes: its constructor keywords but the
        run's context (backbone, classes, input shape) and objects (freeze schedule, extras)."""
        internal = (*CONTEXT_ARGS, *getattr(self.module, "NOT_HYPERPARAMETERS", ()))
        return [name for name in self.parameters() if name not in internal]


STRATEGIES: Registry[StrategySpec] = Registry("strategy")


def register_strategy(
    name: str, *, uses_source: bool, required_source: str | None = None
) -> Callable[[type], type]:
    """Class decorator: register a classifier module as strategy ``name`` (run by the
    ``classify`` task)."""

    def add(cls: type) -> type:
        STRATEGIES.register(name, StrategySpec(cls, uses_source, "classify", required_source))
        return cls

    return add


def available_strategies() -> list[str]:
    return STRATEGIES.names()


def strategy_spec(name: str) -> StrategySpec:
    """The spec for ``name``; a ConfigError listing valid names otherwise."""
    return STRATEGIES.get(name)


def strategy_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The module's keyword arguments from the ``strategy`` config node (null = default);
    a ConfigError naming an unknown key and the accepted ones."""
    spec = strategy_spec(str(cfg["name"]))
    accepted = spec.options()
    options = {k: v for k, v in cfg.items() if k not in NON_OPTION_KEYS}
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"strategy={cfg['name']} has no option {unknown[0]}{closest(unknown[0], accepted)}; "
            f"accepted: {', '.join(accepted)}"
        )
    return {k: v for k, v in options.items() if v is not None}


def check_strategy_config(cfg: Mapping[str, Any]) -> None:
    """Fail fast, before any source is built, on options the strategy would refuse."""
    spec = strategy_spec(str(cfg["name"]))
    if spec.module is None:
        return
    options = strategy_options(cfg)
    check_arguments("strategy", options, spec.constructors(), accepted=spec.options())
    check_optim_config(options.get("optimizer"), options.get("scheduler"))
    checker = getattr(spec.module, "check_options", None)
    if checker is not None:
        checker(**options)


def build_strategy(
    cfg: Mapping[str, Any],
    backbone: Backbone,
    num_classes: int,
    class_names: list[str] | None = None,
    input_shape: tuple[int, int, int] | None = None,
    extras: Mapping[str, Any] | None = None,
) -> Any:
    """The strategy module described by the ``strategy`` config node. ``extras`` are objects a
    source hands over (e.g. an autoencoder's decoder); a module receives those it takes."""
    spec = strategy_spec(str(cfg["name"]))
    if spec.module is None:
        raise ConfigError(f"strategy '{cfg['name']}' has its own task, not a classifier module")
    accepted = spec.parameters()
    given = {k: v for k, v in (extras or {}).items() if k in accepted}
    return spec.module(
        backbone,
        num_classes,
        class_names=class_names,
        input_shape=input_shape,
        **strategy_options(cfg),
        **given,
    )
