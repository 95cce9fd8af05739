"""Backbone weights from a file: a Lightning ``.ckpt`` of any earlier run or a ``.safetensors``
(read safely), and loading them into a backbone with a clear error when they do not fit."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from transferlab.core.checkpoint import read_checkpoint, state_mismatch
from transferlab.core.errors import CheckpointError, SourceError

BACKBONE_PREFIX = "backbone."


def _extract_backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys under ``backbone.`` with the prefix removed; a bare backbone state as is."""
    picked = {
        k[len(BACKBONE_PREFIX) :]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)
    }
    return picked or dict(state)


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The whole ``state_dict`` stored in ``path`` (``.ckpt``/``.pt``/``.safetensors``)."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"cannot read safetensors file {path}: {err}") from None
    payload = read_checkpoint(path)
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors")
    return state


def load_backbone_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone's ``state_dict`` stored in ``path`` (``.ckpt``/``.pt``/``.safetensors``)."""
    return _extract_backbone(load_state(path))


def apply_backbone_state(backbone: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load ``state`` into ``backbone``; list mismatched keys and shapes if it does not fit."""
    parts = state_mismatch(backbone.state_dict(), state)
    if parts:
        raise CheckpointError(
            f"{origin} was built for another architecture or input than "
            f"{getattr(backbone, 'name', 'this backbone')}: {'; '.join(parts)}"
        )
    backbone.load_state_dict(state)


def non_finite_keys(state: dict[str, torch.Tensor]) -> list[str]:
    """The keys of floating-point tensors in ``state`` that hold a NaN or an infinity."""
    return [
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def check_finite(state: dict[str, torch.Tensor], origin: str, fix: str) -> None:
    """Refuse weights with NaN or infinite values in one line naming ``origin`` (where they
    come from) and ``fix`` (what to do), before any training step meets them."""
    bad = non_finite_keys(state)
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise SourceError(
            f"the weights of {origin} are not finite (NaN or infinite values in {bad[0]}{more}); "
            f"{fix}"
        )
