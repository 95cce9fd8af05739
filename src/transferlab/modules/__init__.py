"""LightningModules (every method's training step, including the source-pretraining ones) and
their parts: freezing schedules, optimizers, losses, callbacks. No disk or global-config access:
what a module needs is handed to its constructor.

Importing this package registers every classifier strategy (``@register_strategy``); a new one
is a module in this package plus a YAML file in ``conf/strategy/``.
"""

from transferlab.core.discovery import import_submodules
from transferlab.modules.classifier import ClassifierModule
from transferlab.modules.finetune import FINETUNE_MODES, FinetuneModule, ScratchModule
from transferlab.modules.freezing import FreezeSchedule
from transferlab.modules.registry import (
    STRATEGIES,
    available_strategies,
    build_strategy,
    register_strategy,
    strategy_spec,
)

import_submodules(__name__)

__all__ = [
    "FINETUNE_MODES",
    "STRATEGIES",
    "ClassifierModule",
    "FinetuneModule",
    "FreezeSchedule",
    "ScratchModule",
    "available_strategies",
    "build_strategy",
    "register_strategy",
    "strategy_spec",
]
