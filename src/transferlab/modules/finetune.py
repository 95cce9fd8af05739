"""Fine-tuning a pretrained backbone (full, linear probe, partial, LP-FT, gradual unfreezing,
layer transfer) and training the same architecture from scratch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import torch
from lightning.pytorch.callbacks import Callback
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt

from transferlab.core.errors import ConfigError
from transferlab.modules.classifier import ClassifierModule
from transferlab.modules.ema import WeightEMA
from transferlab.modules.freezing import FREEZE_MODES, FreezeSchedule, reinitialize_stages
from transferlab.modules.peft import (
    apply_peft,
    check_peft,
    lora_layers,
    restrict_trainable,
    use_plain_state_dict,
)
from transferlab.modules.registry import register_strategy
from transferlab.modules.regularizers import ModelParts, build_regularizer, check_regularizer

FINETUNE_MODES = FREEZE_MODES
MethodNode = str | Mapping[str, Any] | None  # a method name, or {name: ..., <its options>}
Decay = Annotated[float, Field(gt=0.0, lt=1.0)]


@register_strategy("finetune", uses_source=True)
class FinetuneModule(ClassifierModule):
    """Adapt a pretrained backbone to the target task.

    ``mode`` (with ``freeze_stages``, ``lp_epochs``, ``unfreeze_every``) is the
    :class:`FreezeSchedule`: ``full``, ``linear_probe``, ``partial``, ``lp_ft`` or ``gradual``.
    In ``full`` and the unfrozen phases the backbone learns at ``backbone_lr_ratio`` x the
    head's rate. ``transfer_stages`` keeps only that many lower stages of the pretrained
    backbone and re-initialises the rest (layer transfer, Yosinski et al. 2014; null keeps all).

    The fine-tuning toolbox (docs/finetune_toolbox.md), in every mode: ``regularizer`` adds a
    loss term (``modules/regularizers.py``: l2sp, delta, bss), ``peft`` limits which backbone
    weights train (``modules/peft.py``: bitfit, norm, lora) and ``ema`` (a decay) validates
    and tests an exponential moving average of the weights.
    """

    strategy_name = "finetune"

    def __init__(
        self,
        *args: Any,
        mode: str = "full",
        backbone_lr_ratio: NonNegativeFloat = 0.1,
        freeze_stages: NonNegativeInt = 0,
        lp_epochs: NonNegativeInt = 5,
        unfreeze_every: PositiveInt = 1,
        transfer_stages: NonNegativeInt | None = None,
        regularizer: MethodNode = None,
        peft: MethodNode = None,
        ema: Decay | None = None,
        **kwargs: Any,
    ) -> None:
        schedule = self.check_options(
            mode=mode,
            backbone_lr_ratio=backbone_lr_ratio,
            freeze_stages=freeze_stages,
            lp_epochs=lp_epochs,
            unfreeze_every=unfreeze_every,
            regularizer=regularizer,
            peft=peft,
        )
        super().__init__(*args, freeze=schedule, **kwargs)
        stages = self.backbone.stages()
        if transfer_stages is not None and not 0 <= transfer_stages <= len(stages):
            raise ConfigError(
                f"transfer_stages={transfer_stages} but {self.backbone.name} has {len(stages)} "
                f"stages; use 0..{len(stages)} or null (all)"
            )
        kept = len(stages) if transfer_stages is None else transfer_stages
        reinitialize_stages(stages[kept:])
        self.transfer_stages = kept
        self.mode = mode
        self.backbone_lr_ratio = backbone_lr_ratio
        # before any adapter changes the backbone: the regulariser keeps the source's state
        self.regularizer = build_regularizer(regularizer, ModelParts(self, kept))
        self.peft_trainable = apply_peft(self.backbone, peft)
        if lora_layers(self.backbone):  # checkpoints hold the merged, plain weights
            use_plain_state_dict(self)
        self.ema = ema

    @classmethod
    def check_options(
        cls,
        mode: str = "full",
        backbone_lr_ratio: float = 0.1,
        freeze_stages: int = 0,
        lp_epochs: int = 5,
        unfreeze_every: int = 1,
        regularizer: MethodNode = None,
        peft: MethodNode = None,
        **_: Any,
    ) -> FreezeSchedule:
        """Refuse invalid option values (called before any source is built); the schedule."""
        schedule = FreezeSchedule(mode, freeze_stages, lp_epochs, unfreeze_every)
        reg_name, _options = check_regularizer(regularizer)
        peft_name, _options = check_peft(peft)
        if reg_name == "l2sp" and peft_name == "lora":
            raise ConfigError(
                "regularizer=l2sp penalises how far the backbone weights move, but peft=lora "
                "keeps them frozen (only its adapters train); use peft=none|bitfit|norm with "
                "l2sp, or regularizer=delta|bss with lora"
            )
        return schedule

    def backbone_lr_scale(self) -> float:
        return self.backbone_lr_ratio

    def limit_trainable(self) -> None:
        restrict_trainable(self.backbone, self.peft_trainable)

    def regularization(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        features: torch.Tensor,
        logits: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        if self.regularizer is None:
            return {}
        return self.regularizer.terms(images, labels, features, logits)

    def configure_callbacks(self) -> list[Callback]:
        """The weight average (``ema``) while fitting; a test reads the checkpoint's average."""
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        return [WeightEMA(self.ema)] if self.ema is not None and fitting else []


@register_strategy("scratch", uses_source=False)
class ScratchModule(ClassifierModule):
    """The same architecture trained from random initialisation: the baseline."""

    strategy_name = "scratch"
