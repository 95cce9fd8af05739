"""The one way this project reads a checkpoint: ``torch.load(weights_only=True)``, whatever the
environment says (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` does not override an explicit True), with
one clear error for what cannot be read safely."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferlab.core.errors import CheckpointError


class UnsafeCheckpointError(CheckpointError):
    """A file that ``weights_only`` loading refuses: a pickle that may run code when loaded."""


# passed to every Lightning ``fit``/``test``/``validate`` that is given a checkpoint path
SAFE_LOAD = {"weights_only": True}


def _checkpoint_in(directory: Path) -> str:
    """Which file of a run (or checkpoint) directory to give instead of the directory."""
    found = sorted(directory.glob("*.ckpt")) or sorted(directory.glob("checkpoints/*.ckpt"))
    if not found:
        return "give a checkpoint file (.ckpt); there is none in it or its checkpoints/ folder"
    last = [p for p in found if p.name == "last.ckpt"]
    return f"give a checkpoint file, e.g. {(last or found)[0]}"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; one clear error when that is not possible
    (missing file, a directory, a pickle that would run code, a truncated or foreign file)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; {_checkpoint_in(path)}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it is not a plain-weights checkpoint "
            f"(weights_only loading failed: {first[:160]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated or not a torch checkpoint "
            f"({type(err).__name__})"
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a checkpoint dict")
    return payload


def state_mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """What keeps ``state`` from loading into a module whose state is ``own``: shape
    mismatches, missing and unexpected keys (a few of each); empty when it fits."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    parts = []
    if shapes:
        parts.append(f"shape mismatch: {', '.join(shapes[:4])}")
    if missing:
        parts.append(f"missing keys: {', '.join(missing[:4])}")
    if unexpected:
        parts.append(f"unexpected keys: {', '.join(unexpected[:4])}")
    return parts


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state dict as contiguous CPU tensors (what safetensors files hold)."""
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
