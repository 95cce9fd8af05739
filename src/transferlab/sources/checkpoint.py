"""Backbone weights from a file: a Lightning ``.ckpt`` of any earlier run or a ``.safetensors``."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from transferlab.errors import CheckpointError

BACKBONE_PREFIX = "backbone."


def _extract_backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys under ``backbone.`` with the prefix removed; a bare backbone state as is."""
    picked = {
        k[len(BACKBONE_PREFIX) :]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)
    }
    return picked or dict(state)


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint with ``weights_only=True``; one clear error when that is not possible."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain-weights checkpoint "
            f"(weights_only loading failed: {first[:160]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated or not a torch checkpoint "
            f"({type(err).__name__})"
        ) from None


def load_backbone_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone's ``state_dict`` stored in ``path`` (``.ckpt``/``.pt``/``.safetensors``)."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _extract_backbone(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"cannot read safetensors file {path}: {err}") from None
    payload = read_checkpoint(path)
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors")
    return _extract_backbone(state)


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


def apply_backbone_state(backbone: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load ``state`` into ``backbone``; list mismatched keys and shapes if it does not fit."""
    parts = state_mismatch(backbone.state_dict(), state)
    if parts:
        raise CheckpointError(
            f"{origin} was built for another architecture or input than "
            f"{getattr(backbone, 'name', 'this backbone')}: {'; '.join(parts)}"
        )
    backbone.load_state_dict(state)
