"""Backbones (feature extractors split into stages) and classification heads.

Importing this package registers the ``${tl_min_input_size:<backbone>}`` config resolver: the
model configs take ``min_input_size`` from the backbone's spec (the one place it is stated).
"""

from omegaconf import OmegaConf

from transferlab.models.backbones import (
    Backbone,
    available_backbones,
    backbone_kwargs,
    backbone_spec,
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
from transferlab.models.efficientnet_lite import (
    OFFLINE_IMAGENET_BACKBONES,
    EfficientNetLiteBackbone,
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
    "EfficientNetLiteBackbone",
    "LinearHead",
    "MirrorDecoder",
    "OFFLINE_IMAGENET_BACKBONES",
    "available_backbones",
    "backbone_kwargs",
    "backbone_spec",
    "build_autoencoder",
    "build_backbone",
    "build_discriminator",
    "imagenet_weights_info",
    "register_backbone",
]

if not OmegaConf.has_resolver("tl_min_input_size"):
    OmegaConf.register_new_resolver(
        "tl_min_input_size", lambda name: backbone_spec(str(name)).min_input_size
    )
