"""Callbacks every training run gets, whatever the ``callbacks`` config group holds."""

from __future__ import annotations

import random
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback


class RNGStateCheckpoint(Callback):
    """Saves torch's and Python's global random states in each checkpoint and restores them on
    resume, so that augmentation and dropout draw the same numbers in a resumed run as in an
    uninterrupted one (the data order is restored by the data module's own state)."""

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "python": [version, list(internal), gauss],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "torch" in state_dict:
            torch.set_rng_state(state_dict["torch"])
        if "python" in state_dict:
            version, internal, gauss = state_dict["python"]
            random.setstate((version, tuple(internal), gauss))
