"""GAN networks: a DCGAN generator sized to the input, and a discriminator built from a backbone.

The discriminator is a backbone trunk (the same architecture a classifier uses, so its weights
transfer) plus a linear real/fake head. The generator makes images in the data module's
normalised input space: ``tanh`` gives pixels in [0, 1] that are then normalised with the data
set's mean and std, so real and generated images look alike to the discriminator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from transferlab.core.errors import ConfigError
from transferlab.models.backbones import Backbone, backbones_that, build_backbone

# Backbones that can serve as a GAN discriminator trunk: small, trained from scratch, no
# ImageNet-sized stem (the torchvision/timm models are too large to train adversarially here).
DISCRIMINATOR_BACKBONES = backbones_that("can_discriminate")
MIN_BASE_SIZE = 3  # the generator's first feature map is at least 3x3


def check_discriminator_backbone(name: str) -> None:
    """A ConfigError listing the supported backbones unless ``name`` is one."""
    if name not in DISCRIMINATOR_BACKBONES:
        raise ConfigError(
            f"backbone '{name}' cannot serve as a GAN discriminator; supported: "
            f"{', '.join(DISCRIMINATOR_BACKBONES)} (model=<one of them>)"
        )


def generator_layout(image_size: int) -> tuple[int, int]:
    """``(base, upsamplings)`` with ``base * 2**upsamplings == image_size``: the generator starts
    from a ``base`` x ``base`` map and doubles it ``upsamplings`` times (e.g. 28 = 7 * 2**2)."""
    size, ups = int(image_size), 0
    while size % 2 == 0 and size // 2 >= MIN_BASE_SIZE and ups < 4:
        size, ups = size // 2, ups + 1
    if ups == 0:
        raise ConfigError(
            f"a DCGAN generator cannot make {image_size}x{image_size} images: the size must be "
            f"an even number >= {2 * MIN_BASE_SIZE} (e.g. 8, 28, 32, 64); set data.image_size"
        )
    return size, ups


class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2016): noise -> linear projection to a small map ->
    stride-2 transposed convolutions with BatchNorm+ReLU -> ``tanh`` pixels, then normalised
    with ``mean``/``std`` into the classifier's input space."""

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        width: int = 64,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if latent_dim < 1 or width < 1 or channels < 1:
            raise ConfigError("the generator needs latent_dim, width and channels >= 1")
        base, ups = generator_layout(image_size)
        self.latent_dim, self.channels, self.image_size = int(latent_dim), channels, image_size
        chans = [width * 2 ** (ups - i) for i in range(ups + 1)]  # e.g. 256, 128, 64
        self.project = nn.Sequential(
            nn.Linear(latent_dim, chans[0] * base * base, bias=False),
            nn.Unflatten(1, (chans[0], base, base)),
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            blocks += [
                nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
        self.upsample = nn.Sequential(*blocks)
        self.to_pixels = nn.Sequential(nn.Conv2d(chans[-1], channels, 3, 1, 1), nn.Tanh())
        self.register_buffer("mean", _stat(mean, 0.0, channels))
        self.register_buffer("std", _stat(std, 1.0, channels))
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(module.weight, 0.0, 0.02)  # DCGAN initialisation
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.channels, self.image_size, self.image_size

    def pixels(self, z: torch.Tensor) -> torch.Tensor:
        """Generated images in [0, 1] (what a PNG shows)."""
        return (self.to_pixels(self.upsample(self.project(z))) + 1) / 2

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Generated images in the normalised input space of the data module."""
        return (self.pixels(z) - self.mean) / self.std

    def to_unit(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (real or generated) back to [0, 1] pixels."""
        return (images * self.std + self.mean).clamp(0, 1)


def _stat(values: Sequence[float] | None, default: float, channels: int) -> torch.Tensor:
    items = [default] * channels if values is None else [float(v) for v in values]
    if len(items) == 1:
        items = items * channels
    if len(items) != channels:
        raise ConfigError(f"the generator has {channels} channel(s) but got {len(items)} stats")
    return torch.tensor(items).view(1, channels, 1, 1)


class Discriminator(nn.Module):
    """A backbone trunk and a linear real/fake head: images -> one logit (critic score) each."""

    def __init__(self, trunk: Backbone, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        check_discriminator_backbone(trunk.name)
        self.trunk = trunk
        self.head = nn.Linear(trunk.num_features, 1)
        self.image_shape = tuple(int(v) for v in image_shape)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[1:]) != self.image_shape:
            raise ConfigError(
                f"the discriminator was built for {_shape(self.image_shape)} images but got "
                f"{_shape(images.shape[1:])}; the GAN's data.image_size/channels must match"
            )
        return self.head(self.trunk(images)).squeeze(1)


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in shape)


def build_discriminator(
    name: str,
    image_shape: tuple[int, int, int],
    small_input: bool | None = None,
    **backbone_kwargs: Any,
) -> Discriminator:
    """A discriminator whose trunk is backbone ``name`` built for ``image_shape`` (C, H, W)."""
    check_discriminator_backbone(name)
    channels, size, _ = image_shape
    trunk = build_backbone(
        name, in_chans=channels, input_size=size, small_input=small_input, **backbone_kwargs
    )
    return Discriminator(trunk, image_shape)


def check_generator_fits(generator: DCGANGenerator, image_shape: Sequence[int]) -> None:
    """A ConfigError unless ``generator`` makes images of ``image_shape`` (C, H, W)."""
    if tuple(int(v) for v in image_shape) != generator.image_shape:
        raise ConfigError(
            f"the generator makes {_shape(generator.image_shape)} images but the data has "
            f"{_shape(image_shape)}; a generator only fits the image size it was built for"
        )
