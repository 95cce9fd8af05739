"""Tasks: one run skeleton (:class:`RunContext`) and one task per kind of run (``classify``,
``zeroshot``, ``adapt``, ``transfer_gan``; ``evaluate`` for ``eval.py``). A strategy names the
task that runs it; a new task is a module in this package with a ``@register_task(name)``
function ``run(ctx) -> results record``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from transferlab.core.discovery import import_submodules
from transferlab.modules import strategy_spec
from transferlab.tasks.context import TASKS, RunContext, register_task, to_plain
from transferlab.tasks.evaluate import run_evaluation

import_submodules(__name__)

__all__ = [
    "TASKS",
    "RunContext",
    "register_task",
    "run_evaluation",
    "run_training",
    "to_plain",
]


def run_training(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Run one configuration with the task of its strategy; write ``results.json`` in
    ``output_dir`` and return the record (``{}`` in DDP ranks > 0)."""
    task = TASKS.get(strategy_spec(str(cfg.strategy.name)).task)
    return task(RunContext(cfg, output_dir))
