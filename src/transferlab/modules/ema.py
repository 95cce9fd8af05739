"""An exponential moving average of the weights (``strategy.ema=<decay>``), through Lightning's
:class:`EMAWeightAveraging`: after every optimizer step ``avg = decay * avg + (1 - decay) * w``
(parameters and buffers); validation, the best-checkpoint choice and the test use the average.
A checkpoint holds the average as the model's weights (so ``eval.py``, ``transferlab export`` and
``source=checkpoint`` read the average) and the raw weights under ``current_model_state``, from
which a resumed fit continues."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class WeightEMA(EMAWeightAveraging):
    """:class:`EMAWeightAveraging` that restores its state only when a fit resumes: testing a
    checkpoint loads its weights (the average) as they are."""

    def __init__(self, decay: float) -> None:
        super().__init__(decay=decay)
        self.decay = decay

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
