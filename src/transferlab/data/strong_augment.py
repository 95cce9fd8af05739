"""Strong augmentation of whole image batches: RandAugment (Cubuk et al. 2020) then Cutout, as
FixMatch (Sohn et al. 2020) applies to its unlabelled images.

The operations and their magnitudes are torchvision's ``transforms.v2.RandAugment``; each image
draws its own operations and signs, and the images that drew the same one are transformed
together (a per-image loop costs about 1 ms an image on a CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
from pydantic import Field, NonNegativeInt
from torch import nn

from transferlab.core.schema import typed

UnitFraction = Annotated[float, Field(ge=0.0, le=1.0)]
MAGNITUDE_BINS = 31  # torchvision's default: magnitude 0..30


class StrongAugment(nn.Module):
    """RandAugment with ``num_ops`` operations at ``magnitude`` (0-30, torchvision's scale) and a
    gray Cutout square of side ``cutout`` x the image size, on normalised float batches
    (B, C, H, W) whose per-channel ``mean``/``std`` are given: the images are mapped back to
    uint8 pixels, augmented there, and normalised again."""

    @typed("strategy.strong_augment")
    def __init__(
        self,
        num_ops: NonNegativeInt = 2,
        magnitude: Annotated[int, Field(ge=0, lt=MAGNITUDE_BINS)] = 9,
        cutout: UnitFraction = 0.5,
        *,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
    ) -> None:
        from torchvision.transforms import v2  # here: only FixMatch runs build it

        super().__init__()
        self.randaugment = v2.RandAugment(num_ops, magnitude, MAGNITUDE_BINS)
        self.cutout = float(cutout)
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        ra = self.randaugment
        return f"num_ops={ra.num_ops}, magnitude={ra.magnitude}, cutout={self.cutout}"

    def _one_layer(self, pixels: torch.Tensor) -> torch.Tensor:
        """One RandAugment operation per image (uint8 batch)."""
        ra = self.randaugment
        space = ra._AUGMENTATION_SPACE
        names = list(space)
        height, width = pixels.shape[-2:]
        op = torch.randint(len(names), (len(pixels),))
        negative = torch.rand(len(pixels)) <= 0.5
        out = pixels.clone()
        for index in op.unique().tolist():
            magnitudes_fn, signed = space[names[index]]
            magnitudes = magnitudes_fn(ra.num_magnitude_bins, height, width)
            base = float(magnitudes[ra.magnitude]) if magnitudes is not None else 0.0
            in_op = op == index
            for sign in (1.0, -1.0) if signed else (1.0,):
                chosen = in_op & (negative == (sign < 0)) if signed else in_op
                rows = chosen.nonzero().squeeze(1).to(pixels.device)
                if len(rows):
                    out[rows] = ra._apply_image_or_video_transform(
                        pixels[rows], names[index], sign * base, ra.interpolation, ra._fill
                    )
        return out

    def _cutout(self, pixels: torch.Tensor) -> torch.Tensor:
        """A gray square per image, centred anywhere (clipped at the borders)."""
        b, _, h, w = pixels.shape
        side = round(self.cutout * min(h, w))
        if side == 0:
            return pixels
        device = pixels.device
        top = torch.randint(0, h, (b, 1, 1), device=device) - side // 2
        left = torch.randint(0, w, (b, 1, 1), device=device) - side // 2
        rows = torch.arange(h, device=device).view(1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, w)
        inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        return pixels.masked_fill(inside.unsqueeze(1), 127)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Augment a normalised batch (B, C, H, W); each image gets its own draws."""
        if images.ndim != 4:
            raise ValueError(f"StrongAugment expects (B, C, H, W), got {tuple(images.shape)}")
        unit = images.float() * self.std + self.mean
        pixels = (unit.clamp(0, 1) * 255).round().to(torch.uint8)
        for _ in range(self.randaugment.num_ops):
            pixels = self._one_layer(pixels)
        pixels = self._cutout(pixels)
        return ((pixels.float() / 255 - self.mean) / self.std).to(images.dtype)
