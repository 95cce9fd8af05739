"""uint8 images -> float tensors: resize, channel count, scaling and normalisation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHUNK = 8192  # images converted at a time, to bound peak memory
HISTOGRAM_CHUNK_BYTES = 64 * 2**20  # uint8 pixels counted at a time (file images are decoded)


def _convert_chunk(x: torch.Tensor, image_size: int | None, channels: int | None) -> torch.Tensor:
    x = x.to(torch.float32).div_(255.0)
    if channels == 1 and x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    if image_size is not None and tuple(x.shape[-2:]) != (image_size, image_size):
        x = F.interpolate(
            x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
        )
    if channels == 3 and x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return x


def to_float(
    images: torch.Tensor, image_size: int | None = None, channels: int | None = None
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1], resized to ``image_size`` squared if set and
    converted to ``channels`` (1 -> 3 by repeat, 3 -> 1 by the channel mean) if set."""
    chunks = [
        _convert_chunk(images[i : i + CHUNK], image_size, channels)
        for i in range(0, len(images), CHUNK)
    ]
    if not chunks:
        size = images.shape[-2:] if image_size is None else (image_size, image_size)
        device = getattr(images, "device", None)  # file images have none
        return torch.empty(0, channels or images.shape[1], *size, device=device)
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


def _histograms(images: torch.Tensor, to_gray: bool) -> tuple[list[torch.Tensor], int]:
    """Per-channel value histograms (exact, cheap) and the value that means 1.0."""
    channels = images.shape[1]
    # the channel mean is (sum of channels) / (255 * C): histogram the sums
    top = 255 * channels if to_gray else 255
    hists = [torch.zeros(top + 1, dtype=torch.int64) for _ in range(1 if to_gray else channels)]
    step = max(1, HISTOGRAM_CHUNK_BYTES // max(1, torch.Size(images.shape[1:]).numel()))
    for i in range(0, len(images), step):
        chunk = images[i : i + step]
        if to_gray:
            hists[0] += torch.bincount(
                chunk.to(torch.int64).sum(dim=1).flatten(), minlength=top + 1
            )
            continue
        for k in range(channels):
            hists[k] += torch.bincount(chunk[:, k].flatten(), minlength=256)
    return hists, top


def pool_stats(images: torch.Tensor, channels: int | None = None) -> tuple[list[float], ...]:
    """Per-channel mean and std of a uint8 pool scaled to [0, 1], after the channel conversion
    (taken at native resolution: resizing barely changes them)."""
    hists, top = _histograms(images, to_gray=channels == 1 and images.shape[1] != 1)
    means, stds = [], []
    for hist in hists:
        values = torch.arange(len(hist), dtype=torch.float64) / top
        count = hist.sum().to(torch.float64)
        mean = (hist * values).sum() / count
        var = (hist * values.square()).sum() / count - mean.square()
        means.append(float(mean))
        stds.append(max(float(var.clamp_min(0).sqrt()), 1e-6))
    if channels == 3 and len(means) == 1:
        means, stds = means * 3, stds * 3
    return means, stds


def imagenet_stats(channels: int) -> tuple[list[float], list[float]]:
    """ImageNet mean/std for 3 channels, or their averages for 1 channel."""
    if channels == 3:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    return [sum(IMAGENET_MEAN) / 3] * channels, [sum(IMAGENET_STD) / 3] * channels


def normalize_(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """In place: ``(x - mean) / std`` per channel."""
    m = torch.as_tensor(list(mean), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(list(std), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


@dataclass(frozen=True)
class BatchTransform:
    """Stored uint8 pixels (B, C, H, W) at native size -> model inputs: float in [0, 1],
    channels converted, resized to ``image_size`` squared, normalised by ``mean``/``std`` (when
    set). Runs on the batch's device; a float batch is taken as already prepared and returned
    unchanged."""

    image_size: int | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            return images
        x = to_float(images, self.image_size, self.channels)
        if self.mean is not None and self.std is not None:
            normalize_(x, self.mean, self.std)
        return x

    def output_shape(self, stored: Sequence[int]) -> tuple[int, int, int]:
        """(C, H, W) of the inputs made from stored images of shape ``stored`` (C, H, W)."""
        channels, height, width = (int(v) for v in stored[-3:])
        if self.image_size is not None:
            height = width = self.image_size
        return self.channels or channels, height, width
