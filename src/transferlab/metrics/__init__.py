"""Image-quality metrics for generative models (feature FID/KID)."""

from transferlab.metrics.fid import (
    FID_EXTRACTORS,
    FeatureExtractor,
    InceptionFeatures,
    image_quality,
)

__all__ = ["FID_EXTRACTORS", "FeatureExtractor", "InceptionFeatures", "image_quality"]
