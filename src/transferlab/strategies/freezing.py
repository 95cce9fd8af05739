"""Freezing backbone stages: no gradients, and BatchNorm/Dropout kept in eval mode."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


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
