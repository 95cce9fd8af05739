"""Sweeps that survive failures and interruptions.

Every run is identified by a hash of its configuration (without paths or run-local options).
With ``resume=true``, a run whose configuration already finished in the same sweep (or run)
directory is skipped, and an interrupted one continues from its ``last.ckpt``.
"""

from __future__ import annotations

import json
from pathlib import Path

from transferlab.core.results import RESULTS_FILE


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
