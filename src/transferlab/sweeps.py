"""Sweeps that survive failures and interruptions.

Every run is identified by a hash of its configuration (without paths or run-local options).
With ``resume=true``, a run whose configuration already finished in the same sweep (or run)
directory is skipped, and an interrupted one continues from its ``last.ckpt``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from transferlab.results import RESULTS_FILE
from transferlab.sources.cache import config_hash

# top-level keys that do not change what a run computes
RUN_LOCAL_KEYS = ("paths", "hydra", "ckpt_path", "print_config", "resume", "tags")


def run_hash(cfg: DictConfig | Mapping[str, Any]) -> str:
    """The identity of a run's configuration (same hash = same computation).

    Interpolations are hashed unresolved, so paths that embed the run directory
    (``${paths.output_dir}/checkpoints``) are the same for every run of a sweep.
    """
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    return config_hash({k: v for k, v in cfg.items() if k not in RUN_LOCAL_KEYS})


def find_finished(search_dir: Path, digest: str) -> Path | None:
    """A completed ``results.json`` under ``search_dir`` with run hash ``digest``, if any."""
    if not search_dir.is_dir():
        return None
    for path in sorted(search_dir.rglob(RESULTS_FILE)):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if record.get("status") == "completed" and record.get("run_hash") == digest:
            return path
    return None


def resumable_checkpoint(output_dir: Path) -> Path | None:
    """The ``last.ckpt`` an interrupted run left in its own directory, if any."""
    last = output_dir / "checkpoints" / "last.ckpt"
    return last if last.is_file() else None


def checkpoint_run_hash(path: Path) -> str | None:
    """The run hash stored in a training checkpoint (``None`` if unreadable or absent)."""
    from transferlab.errors import CheckpointError
    from transferlab.sources.checkpoint import read_checkpoint

    try:
        payload = read_checkpoint(path)
    except CheckpointError:
        return None
    run_config = (payload.get("hyper_parameters") or {}).get("run_config") or {}
    return run_config.get("run_hash")
