"""Image-quality metrics for generative models (feature FID/KID)."""

from transferlab.metrics.fid import (
    FID_EXTRACTORS,
    FeatureExtractor,
    build_feature_extractor,
    image_quality,
)

__all__ = ["FID_EXTRACTORS", "FeatureExtractor", "build_feature_extractor", "image_quality"]
