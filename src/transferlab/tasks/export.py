"""Export a training checkpoint's weights as safetensors (loadable without running code)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save_file

from transferlab.core.errors import CheckpointError, storage_error
from transferlab.core.store import FILE_MODE
from transferlab.tasks.checkpoints import load_training_checkpoint

EXPORTED_PREFIXES = ("backbone.", "head.")


def export_target(ckpt_path: str | Path, out: str | Path | None = None) -> Path:
    """Where the export of ``ckpt_path`` goes: ``out``; inside ``out`` as
    ``<checkpoint stem>.safetensors`` when it is an existing directory; by default next to the
    checkpoint."""
    if not out:
        return Path(ckpt_path).with_suffix(".safetensors")
    out = Path(out).expanduser()
    return out / f"{Path(ckpt_path).stem}.safetensors" if out.is_dir() else out


def export_safetensors(ckpt_path: str | Path, out: str | Path | None = None) -> Path:
    """Write the model weights of ``ckpt_path`` (backbone ``backbone.*`` and head ``head.*``)
    to :func:`export_target`, with the run config and the preprocessing (image size, channels,
    resize rule, normalisation, class names) as metadata. The file is also a valid
    ``source=checkpoint`` source. Written atomically: a failed write (an ``OSError``, e.g. a
    read-only or full disk) leaves no temporary file and no partial export."""
    payload, run_config = load_training_checkpoint(ckpt_path)
    target = export_target(ckpt_path, out)
    state = {
        k: v.detach().cpu().contiguous()
        for k, v in payload["state_dict"].items()
        if k.startswith(EXPORTED_PREFIXES)
    }
    if not state:
        strategy = (run_config.get("cfg", {}).get("strategy") or {}).get("name")
        raise CheckpointError(
            f"{ckpt_path} holds no classifier weights (backbone.*, head.*) to export: it is a "
            f"strategy={strategy} checkpoint"
        )
    metadata = {"format": "transferlab", "run_config": json.dumps(run_config, default=str)}
    if run_config.get("preprocessing"):  # also on its own, for readers of the metadata
        metadata["preprocessing"] = json.dumps(run_config["preprocessing"])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        save_file(state, str(tmp), metadata=metadata)
        os.chmod(tmp, FILE_MODE)  # safetensors writes 0600
        os.replace(tmp, target)  # atomic: a crash never leaves a half-written export
    except Exception as err:  # a full or read-only disk: named by the file asked for
        failed = storage_error(err) or (err if isinstance(err, OSError) else None)
        if failed is None:
            raise
        raise OSError(failed.errno, failed.strerror, str(target)) from None
    finally:
        if tmp.exists():  # (unlinking a missing file on a read-only disk fails too)
            tmp.unlink()
    return target
