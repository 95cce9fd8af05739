"""Transfer from a GAN: a classifier on the discriminator's (multi-layer) features
(``strategy=gan``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import PositiveInt
from torch import nn

from transferlab.core.errors import ConfigError
from transferlab.models import LinearHead
from transferlab.modules.finetune import FinetuneModule
from transferlab.modules.registry import register_strategy

GAN_FEATURES = ("multilayer", "pooled")


def multilayer_features(stages: list[nn.Module], images: torch.Tensor, pool: int) -> torch.Tensor:
    """Every stage's output, spatial maps max-pooled to ``pool`` x ``pool``, flattened and
    concatenated (the DCGAN paper's discriminator features)."""
    parts, x = [], images
    for stage in stages:
        x = stage(x)
        part = F.adaptive_max_pool2d(x, pool) if x.dim() == 4 else x
        parts.append(part.flatten(1))
    return torch.cat(parts, dim=1)


@register_strategy("gan", uses_source=True, required_source="gan")
class GanFeatureModule(FinetuneModule):
    """A classifier on a (GAN discriminator) trunk's multi-layer features.

    ``features="multilayer"``: the head sees every stage's output max-pooled to ``pool_size``
    squared and standardised by a BatchNorm without affine parameters (still a linear
    classifier at test time); ``"pooled"``: the trunk's own pooled features, as
    :class:`FinetuneModule`. The freezing policy (``mode``) is FinetuneModule's.
    """

    strategy_name = "gan"

    def __init__(
        self, *args: Any, features: str = "multilayer", pool_size: PositiveInt = 4, **kwargs: Any
    ) -> None:
        kwargs.setdefault("mode", "linear_probe")
        super().__init__(*args, **kwargs)
        if features not in GAN_FEATURES:
            raise ConfigError(f"unknown features '{features}'; valid: {', '.join(GAN_FEATURES)}")
        if int(pool_size) < 1:
            raise ConfigError(f"pool_size must be >= 1, got {pool_size}")
        self.feature_kind, self.pool_size = features, int(pool_size)
        if features == "multilayer":
            if self.input_shape is None:
                raise ConfigError("strategy=gan with multilayer features needs the input shape")
            dummy = torch.zeros(2, *self.input_shape)
            was_training = self.backbone.training
            self.backbone.eval()
            with torch.no_grad():
                dim = multilayer_features(self.backbone.stages(), dummy, self.pool_size).shape[1]
            self.backbone.train(was_training)
            dropout = float(kwargs.get("head_dropout", 0.0))
            self.head = nn.Sequential(
                nn.BatchNorm1d(dim, affine=False), LinearHead(dim, self.num_classes, dropout)
            )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The trunk's pooled features (or cached ones), or every stage's output pooled and
        concatenated."""
        if self.feature_kind == "pooled":
            return super().features(images)
        return multilayer_features(self.backbone.stages(), images, self.pool_size)
