"""Feature FID/KID of generated vs real images, on any feature extractor: a frozen backbone's
pooled features (:class:`FeatureExtractor`; see ``sources/fid.py`` for the offline default) or
torchmetrics' Inception-v3 (:class:`InceptionFeatures`: needs ``torch-fidelity`` and its
downloaded weights)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from transferlab.core.errors import ConfigError, SourceError

log = logging.getLogger(__name__)

FID_EXTRACTORS = ("classifier", "inception")


class FeatureExtractor(nn.Module):
    """A frozen backbone's pooled features (always in eval mode, no gradients)."""

    def __init__(self, backbone: nn.Module, num_features: int) -> None:
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.num_features = int(num_features)

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images).float()


class InceptionFeatures(nn.Module):
    """torchmetrics' Inception-v3 pool features of normalised images (mapped back to pixels)."""

    def __init__(self, to_unit: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
        except (ImportError, ModuleNotFoundError, OSError, RuntimeError) as err:
            raise SourceError(
                f"Inception FID is unavailable ({type(err).__name__}: {str(err)[:120]}); it needs "
                "`pip install torch-fidelity` and its weights from the internet once; offline use "
                "the default strategy.fid.extractor=classifier"
            ) from None
        self.to_unit = to_unit
        self.num_features = 2048

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = self.to_unit(images)
        if pixels.shape[1] == 1:
            pixels = pixels.repeat(1, 3, 1, 1)
        return self.net((pixels * 255).to(torch.uint8)).float()


def image_quality(
    extractor: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    batch_size: int = 500,
    kid_subsets: int = 50,
) -> dict[str, float]:
    """``{"fid", "kid_mean", "kid_std"}`` of ``fake`` vs ``real`` images (both normalised)."""
    if len(real) < 2 or len(fake) < 2:
        raise ConfigError("FID/KID need at least 2 real and 2 generated images")
    subset = min(1000, len(real), len(fake))
    fid = FrechetInceptionDistance(feature=extractor, reset_real_features=False)
    with warnings.catch_warnings():  # it keeps all features in memory: fine at these sizes
        warnings.filterwarnings("ignore", message=".*Kernel Inception Distance.*")
        kid = KernelInceptionDistance(
            feature=extractor, subsets=kid_subsets, subset_size=subset, reset_real_features=False
        )
    device = next(extractor.parameters(), torch.empty(0)).device
    for images, is_real in ((real, True), (fake, False)):
        for chunk in _chunks(images, batch_size):
            chunk = chunk.to(device)
            fid.update(chunk, real=is_real)
            kid.update(chunk, real=is_real)
    kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


def _chunks(images: torch.Tensor, size: int) -> Sequence[torch.Tensor]:
    return [images[i : i + size] for i in range(0, len(images), size)]
