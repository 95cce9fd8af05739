"""Fine-tuning a pretrained backbone: full, linear probe, partial, LP-FT, gradual unfreezing."""

from __future__ import annotations

from typing import Any

from transferlab.errors import ConfigError
from transferlab.strategies.base import ClassifierModule
from transferlab.strategies.freezing import reinitialize_stages

FINETUNE_MODES = ("full", "linear_probe", "partial", "lp_ft", "gradual")


class FinetuneModule(ClassifierModule):
    """Adapt a pretrained backbone to the target task.

    ``mode``:
      - ``full``: train everything, the backbone at ``backbone_lr_ratio`` x the head's rate;
      - ``linear_probe``: backbone frozen (BatchNorm in eval mode), only the head learns;
      - ``partial``: the first ``freeze_stages`` backbone stages frozen, the rest fine-tuned;
      - ``lp_ft``: linear probe for ``lp_epochs`` epochs, then full fine-tuning (Kumar et al. 2022);
      - ``gradual``: head only first, then one more stage unfrozen from the top every
        ``unfreeze_every`` epochs (Howard & Ruder 2018).
    ``transfer_stages`` keeps only that many lower stages of the pretrained backbone and
    re-initialises the rest (layer transfer, Yosinski et al. 2014; null keeps all).
    The frozen set is a function of the epoch, so it survives a resume.
    """

    strategy_name = "finetune"

    def __init__(
        self,
        *args: Any,
        mode: str = "full",
        backbone_lr_ratio: float = 0.1,
        freeze_stages: int = 0,
        lp_epochs: int = 5,
        unfreeze_every: int = 1,
        transfer_stages: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.check_options(
            mode=mode,
            backbone_lr_ratio=backbone_lr_ratio,
            lp_epochs=lp_epochs,
            unfreeze_every=unfreeze_every,
        )
        num_stages = len(self.backbone.stages())
        if mode == "partial" and not 0 <= freeze_stages <= num_stages:
            raise ConfigError(
                f"freeze_stages={freeze_stages} but {self.backbone.name} has {num_stages} "
                f"stages ({', '.join(self.backbone.stage_names)}); use 0..{num_stages}"
            )
        if transfer_stages is not None and not 0 <= transfer_stages <= num_stages:
            raise ConfigError(
                f"transfer_stages={transfer_stages} but {self.backbone.name} has {num_stages} "
                f"stages; use 0..{num_stages} or null (all)"
            )
        kept = num_stages if transfer_stages is None else transfer_stages
        reinitialize_stages(self.backbone.stages()[kept:])
        self.transfer_stages = kept
        self.mode = mode
        self.backbone_lr_ratio = backbone_lr_ratio
        self.freeze_stages = freeze_stages
        self.lp_epochs = lp_epochs
        self.unfreeze_every = unfreeze_every

    @classmethod
    def check_options(
        cls,
        mode: str = "full",
        backbone_lr_ratio: float = 0.1,
        lp_epochs: int = 5,
        unfreeze_every: int = 1,
        **_: Any,
    ) -> None:
        """Refuse invalid option values (called before any source is built)."""
        if mode not in FINETUNE_MODES:
            raise ConfigError(f"unknown finetune mode '{mode}'; valid: {', '.join(FINETUNE_MODES)}")
        if not isinstance(backbone_lr_ratio, (int, float)) or backbone_lr_ratio < 0:
            raise ConfigError(f"backbone_lr_ratio must be a number >= 0, got {backbone_lr_ratio!r}")
        if not isinstance(unfreeze_every, int) or unfreeze_every < 1:
            raise ConfigError(f"unfreeze_every must be an integer >= 1, got {unfreeze_every!r}")
        if not isinstance(lp_epochs, int) or lp_epochs < 0:
            raise ConfigError(f"lp_epochs must be an integer >= 0, got {lp_epochs!r}")

    def frozen_stages_at(self, epoch: int) -> int:
        num_stages = len(self.backbone.stages())
        if self.mode == "linear_probe":
            return num_stages
        if self.mode == "partial":
            return self.freeze_stages
        if self.mode == "lp_ft":
            return num_stages if epoch < self.lp_epochs else 0
        if self.mode == "gradual":
            return max(0, num_stages - epoch // self.unfreeze_every)
        return 0

    def backbone_lr_scale(self) -> float:
        return self.backbone_lr_ratio


class ScratchModule(ClassifierModule):
    """The same architecture trained from random initialisation: the baseline."""

    strategy_name = "scratch"
