"""A run's record inside its checkpoints (config, input spec, source, run hash), and reading it
back safely: what resume, evaluation and export need to rebuild the run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import lightning as L
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from transferlab.core.checkpoint import read_checkpoint
from transferlab.core.errors import CheckpointError, storage_error
from transferlab.core.store import atomic_write

RUN_RECORD_KEY = "transferlab_run"


def write_payload(checkpoint: Mapping[str, Any], handle: BinaryIO) -> None:
    """Serialise a checkpoint into an open file (the one place a checkpoint's bytes are
    written; the fault tests replace it with a write that fails half way)."""
    torch.save(checkpoint, handle)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic on a local disk: the checkpoint is written to
    a temporary file in its own directory, flushed, then renamed over the target. A failed
    write (a full disk) removes the temporary file, leaves the previous checkpoint as it was,
    and ends the run with one line. Remote paths (``s3://...``) keep Lightning's writer."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        try:
            atomic_write(target, lambda handle: write_payload(checkpoint, handle))
        except (OSError, RuntimeError) as err:  # torch's zip writer: RuntimeError from ENOSPC
            failed = storage_error(err) or (err if isinstance(err, OSError) else None)
            if failed is None:
                raise
            reason = failed.strerror or type(failed).__name__
            raise CheckpointError(
                f"could not write checkpoint {target} ({reason}); the checkpoints written "
                "before are intact: free space, then rerun with resume=true to continue"
            ) from None


class RunRecordCheckpoint(Callback):
    """Writes the run's record (``cfg``, ``input_spec``, ``source_info``, ``run_hash``: plain
    containers) into every checkpoint under :data:`RUN_RECORD_KEY`; the task fills the record
    in as it learns the input spec and the source."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[RUN_RECORD_KEY] = {k: _plain(v) for k, v in self.record.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def stored_run_record(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run record of a checkpoint payload (checkpoints of earlier versions kept it in the
    module's hyperparameters as ``run_config``); None when there is none."""
    record = payload.get(RUN_RECORD_KEY)
    if record is None:
        record = (payload.get("hyper_parameters") or {}).get("run_config")
    return dict(record) if isinstance(record, Mapping) else None


def load_training_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A transferlab training checkpoint (read with ``weights_only=True``) and its run record."""
    payload = read_checkpoint(path)
    record = stored_run_record(payload)
    if not record or "cfg" not in record or "state_dict" not in payload:
        raise CheckpointError(
            f"{path} is not a transferlab training checkpoint (no stored run config); "
            "use it as a source instead: source=checkpoint source.path=..."
        )
    return payload, record


def has_checkpoint_io(plugins: Any) -> bool:
    """Whether a trainer's ``plugins`` argument already holds a checkpoint writer."""
    items = plugins if isinstance(plugins, (list, tuple)) else [plugins]
    return any(isinstance(p, CheckpointIO) for p in items if p is not None)


def checkpoint_run_hash(path: Path) -> str | None:
    """The run hash stored in a training checkpoint (``None`` if unreadable or absent)."""
    try:
        record = stored_run_record(read_checkpoint(path))
    except CheckpointError:
        return None
    return (record or {}).get("run_hash")


# what a checkpoint must share with a run to continue it (the architecture and the task)
RESUME_KEYS = ("model", "strategy.name", "data.dataset", "data.classes")


def _lookup(cfg: Mapping[str, Any], dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def check_resume_checkpoint(path: str | Path, cfg: Mapping[str, Any]) -> None:
    """Refuse, before anything is built, a ``ckpt_path`` that cannot continue the run ``cfg``:
    unreadable or unsafe, not a transferlab training checkpoint, or trained with another
    model, strategy or classes (one line naming the differing keys)."""
    _, record = load_training_checkpoint(path)
    differing = [k for k in RESUME_KEYS if _lookup(record["cfg"], k) != _lookup(cfg, k)]
    if differing:
        shown = ", ".join(
            f"{k}={_lookup(record['cfg'], k)!r} (this run: {_lookup(cfg, k)!r})" for k in differing
        )
        raise CheckpointError(
            f"{path} cannot continue this run: it was trained with {shown}; run with its "
            "settings, or use its weights as a source: source=checkpoint source.path=..."
        )
