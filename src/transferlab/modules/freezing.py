"""Freezing backbone stages: which stages a schedule freezes at each epoch, and how (no
gradients, BatchNorm/Dropout kept in eval mode)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from transferlab.core.errors import ConfigError

FREEZE_MODES = ("full", "linear_probe", "partial", "lp_ft", "gradual")


@dataclass(frozen=True)
class FreezeSchedule:
    """How many backbone stages (from the input side) are frozen at each epoch.

    ``mode``:
      - ``full``: nothing frozen;
      - ``linear_probe``: every stage frozen (BatchNorm in eval mode), only the head learns;
      - ``partial``: the first ``freeze_stages`` stages frozen;
      - ``lp_ft``: linear probe for ``lp_epochs`` epochs, then nothing frozen (Kumar et al. 2022);
      - ``gradual``: all frozen first, then one more stage unfrozen from the top every
        ``unfreeze_every`` epochs (Howard & Ruder 2018).
    A pure function of the epoch, so a resumed run restores the same state.
    """

    mode: str = "full"
    freeze_stages: int = 0
    lp_epochs: int = 5
    unfreeze_every: int = 1

    def __post_init__(self) -> None:
        if self.mode not in FREEZE_MODES:
            raise ConfigError(
                f"unknown finetune mode '{self.mode}'; valid: {', '.join(FREEZE_MODES)}"
            )
        if not isinstance(self.unfreeze_every, int) or self.unfreeze_every < 1:
            raise ConfigError(
                f"unfreeze_every must be an integer >= 1, got {self.unfreeze_every!r}"
            )
        if not isinstance(self.lp_epochs, int) or self.lp_epochs < 0:
            raise ConfigError(f"lp_epochs must be an integer >= 0, got {self.lp_epochs!r}")

    def check_stages(self, num_stages: int, backbone: str, stage_names: Sequence[str]) -> None:
        """Refuse a ``freeze_stages`` the backbone does not have."""
        if self.mode == "partial" and not 0 <= self.freeze_stages <= num_stages:
            raise ConfigError(
                f"freeze_stages={self.freeze_stages} but {backbone} has {num_stages} "
                f"stages ({', '.join(stage_names)}); use 0..{num_stages}"
            )

    def frozen_stages_at(self, epoch: int, num_stages: int) -> int:
        """The number of leading stages frozen during ``epoch``."""
        if self.mode == "linear_probe":
            return num_stages
        if self.mode == "partial":
            return self.freeze_stages
        if self.mode == "lp_ft":
            return num_stages if epoch < self.lp_epochs else 0
        if self.mode == "gradual":
            return max(0, num_stages - epoch // self.unfreeze_every)
        return 0


def set_frozen_stages(stages: Sequence[nn.Module], num_frozen: int) -> None:
    """Freeze the first ``num_frozen`` stages (input side) and unfreeze the rest."""
    for index, stage in enumerate(stages):
        frozen = index < num_frozen
        for param in stage.parameters():
            param.requires_grad_(not frozen)


def keep_frozen_in_eval(stages: Sequence[nn.Module], num_frozen: int) -> None:
    """Put frozen stages in eval mode so BatchNorm statistics and dropout stay fixed."""
    for stage in stages[:num_frozen]:
        stage.eval()


def count_frozen(stages: Sequence[nn.Module]) -> int:
    """Number of leading stages whose parameters are all frozen."""
    count = 0
    for stage in stages:
        params = list(stage.parameters())
        if params and any(p.requires_grad for p in params):
            break
        count += 1
    return count


def reinitialize_stages(stages: Sequence[nn.Module]) -> None:
    """Give every layer in ``stages`` fresh random weights (``reset_parameters``)."""
    for stage in stages:
        for module in stage.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
