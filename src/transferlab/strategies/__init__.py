"""One LightningModule per transfer method, sharing :class:`ClassifierModule`."""

from transferlab.strategies.base import ClassifierModule
from transferlab.strategies.finetune import FINETUNE_MODES, FinetuneModule, ScratchModule
from transferlab.strategies.registry import available_strategies, build_strategy, strategy_spec

__all__ = [
    "ClassifierModule",
    "FinetuneModule",
    "ScratchModule",
    "FINETUNE_MODES",
    "available_strategies",
    "build_strategy",
    "strategy_spec",
]
