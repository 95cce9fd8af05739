"""Callbacks every training run gets, whatever the ``callbacks`` config group holds: the
divergence guard, the random-state checkpoint and the validation at ``max_steps``."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from transferlab.core.errors import DivergenceError

STRATEGY_LR_HINT = "lower the learning rate (strategy.optimizer.lr) or add warmup"


def check_finite(
    value: torch.Tensor | float,
    where: str,
    *,
    what: str = "training",
    name: str = "the loss",
    hint: str = STRATEGY_LR_HINT,
    kept: str = "checkpoints saved before stay as they were",
) -> None:
    """Raise one :class:`DivergenceError` line when ``value`` holds a NaN or infinity."""
    values = torch.as_tensor(value).detach().float().flatten()
    bad = values[~torch.isfinite(values)]
    if len(bad):
        raise DivergenceError(
            f"{what} diverged: {name} is {float(bad[0])} at {where}; {kept}; {hint}"
        )


class DivergenceGuard(Callback):
    """Stops the run at the first non-finite training loss (after each batch) or validation
    loss (after each validation epoch) with one line saying what to change."""

    def __init__(
        self, what: str = "training", name: str = "the loss", hint: str = STRATEGY_LR_HINT
    ) -> None:
        self.what, self.name, self.hint = what, name, hint

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
            check_finite(loss, where, what=self.what, name=self.name, hint=self.hint)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for key, value in trainer.callback_metrics.items():
            if key.startswith("val/") and "loss" in key:
                check_finite(
                    value,
                    f"the validation of epoch {trainer.current_epoch}",
                    what=self.what,
                    name=f"the validation loss ({key})",
                    hint=self.hint,
                )


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


class ValidateAtMaxSteps(Callback):
    """Validates once more when ``trainer.max_steps`` ends the fit inside an epoch.

    Lightning validates at epoch ends (or every ``val_check_interval``), so a run that stops
    on ``max_steps`` part-way through an epoch would drop the steps since its last validation:
    its best checkpoint, and so its test, could never come from them. Asking the trainer to
    stop at that step makes Lightning validate there (as it does for early stopping), so the
    last steps are validated and checkpointed like an epoch end. Lightning validates on such a
    request only once ``min_epochs`` is met, so a fit that ``max_steps`` ends inside its first
    epoch (the cpu trainer's ``min_epochs`` is 1) would never be validated at all; since
    ``max_steps`` ends the fit whatever ``min_epochs`` says, the minimum is lowered to the
    epochs done at that step."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        max_steps = trainer.max_steps
        if max_steps is not None and max_steps > 0 and trainer.global_step >= max_steps:
            loop = trainer.fit_loop
            loop.min_epochs = min(loop.min_epochs or 0, loop.epoch_progress.current.processed)
            trainer.should_stop = True
