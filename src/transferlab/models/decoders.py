"""Decoders that mirror a backbone's stages, for convolutional autoencoders.

The encoder of an autoencoder is a :class:`Backbone`'s stages without its pooling tail. The
decoder is built from the per-stage feature-map shapes (found with one forward pass of a zeros
tensor) by walking the stages in reverse: every stage gets one block that maps its output shape
back to its input shape (a linear layer for a flattening stage, nearest upsampling + 3x3 conv +
BatchNorm + ReLU for a convolutional one; the block that returns to the image is a plain conv).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from transferlab.core.errors import ConfigError
from transferlab.models.backbones import Backbone, backbones_that

__all__ = [
    "AE_ENCODERS",
    "Autoencoder",
    "MirrorDecoder",
    "build_autoencoder",
    "check_ae_encoder",
    "stage_shapes",
]

# Backbones whose stages run one after another on their own and whose decoders stay small
# (``can_encode`` in their BackboneSpec). Not: timm backbones (their stages are views that
# cannot run alone), vgg16 (a 25,088 -> 4,096 fc stage behind a fixed 7x7 pool), resnet50.
AE_ENCODERS = backbones_that("can_encode")

Shape = tuple[int, ...]


def check_ae_encoder(backbone: Backbone) -> None:
    """A ConfigError listing the supported encoders when ``backbone`` cannot be one."""
    if backbone.name not in AE_ENCODERS or not backbone.stage_names:
        raise ConfigError(
            f"backbone '{backbone.name}' cannot serve as an autoencoder encoder; "
            f"supported: {', '.join(AE_ENCODERS)}"
        )


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


@torch.no_grad()
def stage_shapes(backbone: Backbone, input_shape: Sequence[int]) -> list[Shape]:
    """Output shape (without the batch) of every stage for ``input_shape`` = (C, H, W) inputs."""
    check_ae_encoder(backbone)
    channels, height, width = (int(s) for s in input_shape)
    if min(height, width) < backbone.min_input_size:
        raise ConfigError(
            f"{backbone.name} needs images of at least {backbone.min_input_size} px for an "
            f"autoencoder; got {height}x{width}: set data.image_size >= {backbone.min_input_size}"
        )
    was_training = backbone.training
    backbone.eval()
    x = torch.zeros(1, channels, height, width)
    shapes: list[Shape] = []
    try:
        for stage in backbone.stages():
            x = stage(x)
            shapes.append(tuple(x.shape[1:]))
    except RuntimeError:
        raise ConfigError(
            f"{backbone.name} was built for another input size or channel count than "
            f"{_shape_text(input_shape)} images; build it for the data's image size "
            "(data.image_size) and channels"
        ) from None
    finally:
        backbone.train(was_training)
    return shapes


def _block(in_shape: Shape, out_shape: Shape, last: bool) -> nn.Module:
    """One decoder block mapping a stage's output shape back to its input shape."""
    if len(out_shape) != 3:
        raise ConfigError(f"a decoder cannot produce {_shape_text(out_shape)} feature maps")
    if len(in_shape) == 1:  # a flattening stage (e.g. small_cnn's fc): linear + unflatten
        layers: list[nn.Module] = [
            nn.Linear(in_shape[0], out_shape[0] * out_shape[1] * out_shape[2]),
            nn.Unflatten(1, out_shape),
        ]
    else:
        layers = []
        if in_shape[1:] != out_shape[1:]:
            layers.append(nn.Upsample(size=out_shape[1:], mode="nearest"))
        layers.append(nn.Conv2d(in_shape[0], out_shape[0], 3, padding=1, bias=last))
    if not last:
        if len(in_shape) == 3:
            layers.append(nn.BatchNorm2d(out_shape[0]))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MirrorDecoder(nn.Module):
    """Blocks mirroring an encoder's stages, last stage first: features -> image.

    ``input_shape`` is the image shape (C, H, W) the encoder was built for and ``feature_shape``
    the shape of the encoder's output (what the decoder accepts).
    """

    def __init__(self, input_shape: Sequence[int], shapes: Sequence[Shape]) -> None:
        super().__init__()
        self.input_shape: Shape = tuple(int(s) for s in input_shape)
        self.feature_shape: Shape = tuple(shapes[-1])
        ins = [self.input_shape, *shapes[:-1]]  # the input shape of every stage
        self.blocks = nn.Sequential(
            *(_block(shapes[i], ins[i], last=i == 0) for i in reversed(range(len(shapes))))
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if tuple(features.shape[1:]) != self.feature_shape:
            raise ConfigError(
                f"the decoder takes {_shape_text(self.feature_shape)} features (encoder built "
                f"for {_shape_text(self.input_shape)} images) but got "
                f"{_shape_text(features.shape[1:])}"
            )
        return self.blocks(features)


class Autoencoder(nn.Module):
    """Encoder (a backbone's stages, no pooling tail) + mirrored decoder."""

    def __init__(self, backbone: Backbone, decoder: MirrorDecoder) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder

    @property
    def input_shape(self) -> Shape:
        """(C, H, W) of the images this autoencoder was built for."""
        return self.decoder.input_shape

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The last stage's output (feature maps or, for small_cnn, the fc features)."""
        if tuple(images.shape[1:]) != self.input_shape:
            raise ConfigError(
                f"this autoencoder was built for {_shape_text(self.input_shape)} images but got "
                f"{_shape_text(images.shape[1:])}; resize the data (data.image_size="
                f"{self.input_shape[1]}) or build the autoencoder for the new size"
            )
        x = images
        for stage in self.backbone.stages():
            x = stage(x)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(images))


def build_autoencoder(backbone: Backbone, input_shape: Sequence[int]) -> Autoencoder:
    """An autoencoder whose encoder is ``backbone`` for (C, H, W) = ``input_shape`` images."""
    return Autoencoder(backbone, MirrorDecoder(input_shape, stage_shapes(backbone, input_shape)))
