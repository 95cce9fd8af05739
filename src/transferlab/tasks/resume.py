"""Sweeps that survive failures and interruptions, and run directories that are never
overwritten.

Every run is identified by a hash of its configuration (without paths or run-local options),
and a run directory belongs to the configuration whose results or checkpoints it holds:

- with ``resume=true``, a run whose configuration already finished in the same sweep (or run)
  directory is skipped, and an interrupted one continues from the newest readable checkpoint
  of the same configuration in its directory (a line says so when an unreadable ``last.ckpt``
  is passed over);
- a directory that holds another configuration's results or checkpoints is refused, with the
  differing keys; so is a directory holding results (or checkpoints) when ``resume`` is off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferlab.core.checkpoint import UnsafeCheckpointError, read_checkpoint
from transferlab.core.errors import CheckpointError, ConfigError
from transferlab.core.results import (
    RESULTS_FILE,
    config_differences,
    describe_differences,
    read_results,
)
from transferlab.tasks.checkpoints import stored_run_record

CHECKPOINT_DIR = "checkpoints"
# results a rerun of the same configuration may replace (it did not finish)
REPLACEABLE_STATUSES = ("failed", "debug", "untrained")


class RunDirectoryError(ConfigError):
    """A run directory that holds another run: nothing is written into it."""


def find_finished(search_dir: Path, digest: str) -> Path | None:
    """A completed ``results.json`` under ``search_dir`` with run hash ``digest``, if any."""
    if not search_dir.is_dir():
        return None
    for path in sorted(search_dir.rglob(RESULTS_FILE)):
        try:
            record = read_results(path)
        except (OSError, ValueError):
            continue
        if record.get("status") == "completed" and record.get("run_hash") == digest:
            return path
    return None


def remove_interrupted_writes(output_dir: Path) -> list[str]:
    """Remove the temporary files of checkpoint writes that were killed half way (an atomic
    write's ``.<name>.<random>.tmp``; the checkpoint it would have replaced is intact); a
    line for each."""
    folder = output_dir / CHECKPOINT_DIR
    notes = []
    for path in sorted(folder.glob(".*.ckpt.*.tmp")) if folder.is_dir() else []:
        path.unlink(missing_ok=True)
        notes.append(f"resume: removed {path.name}, left by an interrupted checkpoint write")
    return notes


def checkpoint_files(output_dir: Path) -> list[Path]:
    """The checkpoints in a run directory's ``checkpoints/`` (temporary files left out)."""
    folder = output_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.ckpt") if p.is_file() and not p.name.startswith("."))


def resumable_checkpoint(output_dir: Path) -> Path | None:
    """The ``last.ckpt`` an interrupted run left in its own directory, if any."""
    last = output_dir / CHECKPOINT_DIR / "last.ckpt"
    return last if last.is_file() else None


def _other_run(
    where: Path, stored: Mapping[str, Any] | None, plain: Mapping[str, Any], ignore: frozenset[str]
) -> str:
    """``<where> belongs to another configuration: <differing keys>`` (``plain``: this run's
    resolved config; the keys in ``ignore``, its run paths, are not compared)."""
    if not stored:
        return f"{where} belongs to another run (no stored config to compare)"
    differences = config_differences(stored, plain, ignore)
    if not differences:
        return f"{where} belongs to another run (its config differs in unresolved values only)"
    return f"{where} belongs to another configuration: {describe_differences(differences)}"


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        return read_results(path)
    except (OSError, ValueError):
        return None


def check_results_slot(
    output_dir: Path, digest: str, plain: Mapping[str, Any], ignore: frozenset[str] = frozenset()
) -> None:
    """Refuse a run directory whose ``results.json`` another run wrote (another config hash,
    differing keys named) or that this configuration already finished in (``resume=true``
    skips it instead); a same-config record that did not finish may be replaced."""
    path = output_dir / RESULTS_FILE
    if not path.is_file():
        return
    record = _read_record(path)
    if record is None:
        raise RunDirectoryError(
            f"{path} exists but cannot be read; nothing was overwritten: move it away or run "
            "in a new directory"
        )
    if record.get("run_hash") != digest:
        raise RunDirectoryError(
            f"{_other_run(path, record.get('config'), plain, ignore)}; nothing was "
            "overwritten: run in a new directory (leave hydra.run.dir / hydra.sweep.dir unset) "
            "or with its settings"
        )
    if record.get("status") not in REPLACEABLE_STATUSES:
        raise RunDirectoryError(
            f"{path} holds the finished results of this configuration; nothing was "
            "overwritten: resume=true skips it, or run in a new directory"
        )


def check_fresh_directory(output_dir: Path, ckpt_path: str | None) -> None:
    """Without ``resume``: refuse a directory holding checkpoints of an earlier run, unless
    ``ckpt_path`` names one of them (continuing it on purpose)."""
    found = checkpoint_files(output_dir)
    chosen = Path(ckpt_path).expanduser().resolve() if ckpt_path else None
    if found and chosen not in {p.resolve() for p in found}:
        raise RunDirectoryError(
            f"{output_dir / CHECKPOINT_DIR} holds the checkpoints of an earlier run "
            f"({', '.join(p.name for p in found[:3])}); resume=true continues it, or run in "
            "a new directory"
        )


@dataclass
class ResumePoint:
    """Where a ``resume=true`` run continues: ``checkpoint`` (None: nothing to continue, a
    fresh start), with its epoch and step, and the lines to print about passed-over files."""

    checkpoint: Path | None = None
    epoch: int = 0
    step: int = 0
    notes: list[str] = field(default_factory=list)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def choose_checkpoint(
    output_dir: Path, digest: str, plain: Mapping[str, Any], ignore: frozenset[str] = frozenset()
) -> ResumePoint:
    """The checkpoint a ``resume=true`` run continues from: the newest (highest step) readable
    checkpoint of this configuration in ``output_dir/checkpoints``. Unreadable files are passed
    over with a note; a file that would run code, or checkpoints of another configuration
    only, or unreadable ones only, are errors (nothing is trained over them)."""
    removed = remove_interrupted_writes(output_dir)
    mine: list[tuple[int, int, float, Path]] = []
    others: list[tuple[Path, Mapping[str, Any] | None]] = []
    unreadable: list[tuple[Path, str]] = []
    for path in checkpoint_files(output_dir):
        try:
            payload = read_checkpoint(path)
        except UnsafeCheckpointError as err:
            raise CheckpointError(
                f"{_first_line(err)}; resume=true found it in the run directory: remove it "
                "(or run in a new directory)"
            ) from None
        except CheckpointError as err:
            unreadable.append((path, _first_line(err)))
            continue
        record = stored_run_record(payload) or {}
        if record.get("run_hash") == digest:
            step, epoch = int(payload.get("global_step", 0)), int(payload.get("epoch", 0))
            mine.append((step, epoch, path.stat().st_mtime, path))
        else:
            others.append((path, record.get("cfg")))
    if mine:
        step, epoch, _, chosen = max(mine, key=lambda item: item[:3])
        notes = removed + [
            f"resume: passing over {path} ({why}); continuing from {chosen.name} instead"
            for path, why in unreadable
        ]
        return ResumePoint(chosen, epoch, step, notes)
    if others:
        path, stored = others[0]
        raise RunDirectoryError(
            f"cannot resume: {_other_run(path, stored, plain, ignore)}; nothing was "
            "overwritten: run with its settings, or in a new directory"
        )
    if unreadable:
        path, why = unreadable[-1]
        raise CheckpointError(
            f"cannot resume: {why}, and {output_dir / CHECKPOINT_DIR} holds no other readable "
            "checkpoint of this run; delete it to start over, or run in a new directory"
        )
    return ResumePoint(notes=removed)
