"""Fine-tuning a pretrained backbone (full, linear probe, partial, LP-FT, gradual unfreezing,
layer transfer) and training the same architecture from scratch."""

from __future__ import annotations

from typing import Any

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveInt

from transferlab.core.errors import ConfigError
from transferlab.modules.classifier import ClassifierModule
from transferlab.modules.freezing import FREEZE_MODES, FreezeSchedule, reinitialize_stages
from transferlab.modules.registry import register_strategy

FINETUNE_MODES = FREEZE_MODES


@register_strategy("finetune", uses_source=True)
class FinetuneModule(ClassifierModule):
    """Adapt a pretrained backbone to the target task.

    ``mode`` (with ``freeze_stages``, ``lp_epochs``, ``unfreeze_every``) is the
    :class:`FreezeSchedule`: ``full``, ``linear_probe``, ``partial``, ``lp_ft`` or ``gradual``.
    In ``full`` and the unfrozen phases the backbone learns at ``backbone_lr_ratio`` x the
    head's rate. ``transfer_stages`` keeps only that many lower stages of the pretrained
    backbone and re-initialises the rest (layer transfer, Yosinski et al. 2014; null keeps all).
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
        **kwargs: Any,
    ) -> None:
        schedule = self.check_options(
            mode=mode,
            backbone_lr_ratio=backbone_lr_ratio,
            freeze_stages=freeze_stages,
            lp_epochs=lp_epochs,
            unfreeze_every=unfreeze_every,
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

    @classmethod
    def check_options(
        cls,
        mode: str = "full",
        backbone_lr_ratio: float = 0.1,
        freeze_stages: int = 0,
        lp_epochs: int = 5,
        unfreeze_every: int = 1,
        **_: Any,
    ) -> FreezeSchedule:
        """Refuse invalid option values (called before any source is built); the schedule."""
        return FreezeSchedule(mode, freeze_stages, lp_epochs, unfreeze_every)

    def backbone_lr_scale(self) -> float:
        return self.backbone_lr_ratio


@register_strategy("scratch", uses_source=False)
class ScratchModule(ClassifierModule):
    """The same architecture trained from random initialisation: the baseline."""

    strategy_name = "scratch"
