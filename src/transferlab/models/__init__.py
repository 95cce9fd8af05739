"""Backbones (feature extractors split into stages) and classification heads."""

from transferlab.models.backbones import (
    Backbone,
    available_backbones,
    backbone_kwargs,
    build_backbone,
    imagenet_weights_info,
    register_backbone,
)
from transferlab.models.decoders import (
    AE_ENCODERS,
    Autoencoder,
    MirrorDecoder,
    build_autoencoder,
)
from transferlab.models.generators import (
    DISCRIMINATOR_BACKBONES,
    DCGANGenerator,
    Discriminator,
    build_discriminator,
)
from transferlab.models.heads import LinearHead

__all__ = [
    "AE_ENCODERS",
    "Autoencoder",
    "Backbone",
    "DCGANGenerator",
    "DISCRIMINATOR_BACKBONES",
    "Discriminator",
    "LinearHead",
    "MirrorDecoder",
    "available_backbones",
    "backbone_kwargs",
    "build_autoencoder",
    "build_backbone",
    "build_discriminator",
    "imagenet_weights_info",
    "register_backbone",
]
