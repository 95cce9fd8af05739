"""Backbones (feature extractors split into stages) and classification heads."""

from transferlab.models.backbones import (
    Backbone,
    available_backbones,
    build_backbone,
    imagenet_weights_info,
    register_backbone,
)
from transferlab.models.heads import LinearHead

__all__ = [
    "Backbone",
    "LinearHead",
    "available_backbones",
    "build_backbone",
    "imagenet_weights_info",
    "register_backbone",
]
