"""Random augmentation of whole image batches on any device (no per-sample Python loop)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import NonNegativeFloat, NonNegativeInt
from torch import nn

from transferlab.core.schema import typed


class BatchAugment(nn.Module):
    """Per-sample random translation (zero padding), horizontal flip and Gaussian noise.

    Works on float batches (B, C, H, W); draws come from torch's global generators, so results
    are reproducible under ``torch.manual_seed``. Identity when every option is off.
    """

    @typed("data.augment")
    def __init__(
        self,
        hflip: bool = False,
        crop_padding: NonNegativeInt = 0,
        noise_std: NonNegativeFloat = 0.0,
    ) -> None:
        super().__init__()
        self.hflip = hflip
        self.crop_padding = int(crop_padding)
        self.noise_std = float(noise_std)

    @property
    def is_identity(self) -> bool:
        """True when no option is on."""
        return not (self.hflip or self.crop_padding or self.noise_std)

    def extra_repr(self) -> str:
        return f"hflip={self.hflip}, crop_padding={self.crop_padding}, noise_std={self.noise_std}"

    def _translate(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.crop_padding
        b, c, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        top = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device)
        left = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device)
        rows = top + torch.arange(h, device=x.device)  # (b, h) rows of the padded images
        cols = left + torch.arange(w, device=x.device)  # (b, w)
        # one gather over the flattened pixels (~5x faster than 4-D advanced indexing)
        index = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).reshape(b, 1, h * w)
        return padded.flatten(2).gather(2, index.expand(b, c, h * w)).view(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Augment a batch (B, C, H, W); each sample gets its own random draw."""
        if x.ndim != 4:
            raise ValueError(f"BatchAugment expects (B, C, H, W), got shape {tuple(x.shape)}")
        if self.crop_padding:
            x = self._translate(x)
        if self.hflip:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.noise_std:
            x = x + torch.randn_like(x) * self.noise_std
        return x
