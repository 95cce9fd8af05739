"""Images -> the backbone's inputs (as the data module prepares them) -> frozen pooled features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from transferlab.data.datasets import ImageData
from transferlab.data.preprocess import imagenet_stats, normalize_, pool_stats, to_float
from transferlab.models.features import pooled_features


class Preprocessor:
    """uint8 images -> normalised float inputs for ``spec`` (statistics of the training pool,
    as the data module computes them)."""

    def __init__(self, data: ImageData, spec: Mapping[str, Any]) -> None:
        self.channels, self.size = int(spec["channels"]), int(spec["image_size"])
        normalize = spec.get("normalize")
        if normalize == "data":
            self.mean, self.std = pool_stats(data.train_images, self.channels)
        elif normalize == "imagenet":
            self.mean, self.std = imagenet_stats(self.channels)
        else:
            self.mean, self.std = [0.0] * self.channels, [1.0] * self.channels

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        stored = images.shape[-1]
        x = to_float(images, None if stored == self.size else self.size, self.channels)
        return normalize_(x, self.mean, self.std)


def extract_features(
    backbone: nn.Module,
    images: torch.Tensor,
    prepare: Preprocessor,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Pooled features ``(N, num_features)`` of uint8 ``images`` with the backbone in eval mode
    (frozen BatchNorm statistics, no dropout)."""
    return pooled_features(backbone, images, batch_size, device, prepare=prepare)
