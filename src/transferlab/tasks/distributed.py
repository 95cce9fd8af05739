"""Running one configuration on several processes (Lightning DDP) inside Hydra runs and sweeps.

Rules kept here:

- rank 0 alone writes the results file and prints the summary; the other ranks only train;
- the target test split is evaluated once, on one device of the rank-0 process, after the
  distributed fit has ended the process group (the whole test set, no distributed-sampler
  padding);
- Lightning's plain ``ddp`` starts ranks > 0 by re-running the command line; in a Hydra
  multirun that command is the whole sweep, so there ``ddp`` becomes ``ddp_spawn`` (unless a
  cluster, SLURM or torchrun, starts the processes itself);
- a re-run rank writes its log to its own file (``<run dir>/<task>_rank<N>.log``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import (
    LightningEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from lightning.pytorch.utilities import rank_zero_only

from transferlab.core.checkpoint import read_checkpoint

log = logging.getLogger(__name__)

SPAWN_SAFE = {"ddp": "ddp_spawn"}


def global_rank() -> int:
    """This process's global rank (0 outside distributed runs; Lightning keeps it current)."""
    return int(getattr(rank_zero_only, "rank", 0) or 0)


def is_global_zero() -> bool:
    """Whether this process is the one that writes results (rank 0)."""
    return global_rank() == 0


def launched_rank() -> int:
    """The local rank Lightning's script launcher gave a re-run copy of the command (0 if none)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def rank_child_overrides() -> list[str]:
    """Extra overrides for a re-run rank > 0: its own log file next to rank 0's."""
    rank = launched_rank()
    if rank == 0:
        return []
    log_file = f"${{hydra.runtime.output_dir}}/${{task_name}}_rank{rank}.log"
    return [f"hydra.job_logging.handlers.file.filename={log_file}"]


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def processes_created_externally() -> bool:
    """Whether a cluster launcher (SLURM tasks, torchrun) started one process per rank."""
    return SLURMEnvironment.detect() or TorchElasticEnvironment.detect()


def launch_overrides(trainer_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Trainer arguments that keep a multirun job from re-running the whole sweep in its
    ranks: plain ``ddp`` becomes ``ddp_spawn`` there (empty when nothing must change)."""
    strategy = trainer_cfg.get("strategy")
    if not isinstance(strategy, str) or strategy not in SPAWN_SAFE:
        return {}
    if not in_multirun() or processes_created_externally():
        return {}
    log.info(
        "multirun job: trainer.strategy=%s re-runs the command line in every rank (the whole "
        "sweep); using %s",
        strategy,
        SPAWN_SAFE[strategy],
    )
    return {"strategy": SPAWN_SAFE[strategy]}


def is_distributed(trainer: L.Trainer) -> bool:
    """Whether ``trainer`` trains on more than one process."""
    return trainer.world_size > 1


def leave_process_group() -> None:
    """End this process's part in the process group after a distributed fit (every rank calls
    it), so rank 0 can test alone: torchmetrics would otherwise wait for the other ranks."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def single_device_overrides() -> dict[str, Any]:
    """Trainer arguments for evaluating on one device of the rank-0 process (a plain
    environment: a SLURM job's task count must not apply to this one-device trainer)."""
    return {
        "strategy": "auto",
        "devices": 1,
        "num_nodes": 1,
        "sync_batchnorm": False,
        "plugins": [LightningEnvironment()],
    }


def best_score_from_checkpoint(path: str | Path | None) -> float | None:
    """The monitored best score stored in a checkpoint's ModelCheckpoint state (``ddp_spawn``
    brings the best path back to the main process, not the score)."""
    if not path:
        return None
    payload = read_checkpoint(path)
    for state in (payload.get("callbacks") or {}).values():
        if isinstance(state, Mapping) and state.get("best_model_path") == str(path):
            score = state.get("best_model_score")
            return float(score) if score is not None else None
    return None
