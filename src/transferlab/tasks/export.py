"""Export a training checkpoint's weights as safetensors (loadable without running code)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save_file

from transferlab.tasks.checkpoints import load_training_checkpoint


def export_safetensors(ckpt_path: str | Path, out: str | Path | None = None) -> Path:
    """Write the model weights of ``ckpt_path`` (backbone ``backbone.*`` and head ``head.*``)
    to ``out`` (default: next to the checkpoint, ``.safetensors``), with the run config as
    metadata. The file is also a valid ``source=checkpoint`` source."""
    payload, run_config = load_training_checkpoint(ckpt_path)
    target = Path(out) if out else Path(ckpt_path).with_suffix(".safetensors")
    state = {
        k: v.detach().cpu().contiguous()
        for k, v in payload["state_dict"].items()
        if k.startswith(("backbone.", "head."))
    }
    metadata = {"format": "transferlab", "run_config": json.dumps(run_config, default=str)}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp), metadata=metadata)
    os.replace(tmp, target)  # atomic: a crash never leaves a half-written export
    return target
