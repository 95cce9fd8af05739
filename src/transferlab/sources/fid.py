"""The FID/KID feature extractor that works offline.

The default extractor (``extractor: classifier``) is the penultimate layer (pooled features) of
a supervised classifier trained on *all* classes of the data set: a cached ``pretrain`` source
whose config depends only on the data set, the extractor model and the input spec, so every
run on that data compares against the same extractor. ``extractor: inception`` uses
torchmetrics' Inception-v3.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from transferlab.core.errors import ConfigError
from transferlab.metrics.fid import FID_EXTRACTORS, FeatureExtractor, InceptionFeatures
from transferlab.sources.pretrain import PretrainSource

# the extractor classifier: small_cnn trained on every class of the data set
EXTRACTOR_MODEL = {"name": "small_cnn"}
EXTRACTOR_TRAINING = {
    "classes": None,
    "labels_per_class": None,
    "val_per_class": 50,
    "batch_size": 128,
    "augment": None,
    "max_epochs": 2,
    "optimizer": {"name": "adamw", "lr": 0.002, "weight_decay": 0.0001},
    "scheduler": {"name": "cosine"},
    "seed": 0,
}
DATA_IDENTITY = ("dataset", "root", "dataset_kwargs")


def extractor_source_cfg(
    data_cfg: Mapping[str, Any], fid_cfg: Mapping[str, Any], cache_dir: str, accelerator: str
) -> dict[str, Any]:
    """The ``pretrain`` source config of the extractor classifier for this data set."""
    training = {**EXTRACTOR_TRAINING, **dict(fid_cfg.get("training") or {})}
    data = {k: data_cfg.get(k) for k in DATA_IDENTITY}
    data["dataset_kwargs"] = dict(data["dataset_kwargs"] or {})
    return {
        "name": "pretrain",
        **data,
        **training,
        "cache_dir": cache_dir,
        "accelerator": accelerator,
    }


def build_feature_extractor(
    fid_cfg: Mapping[str, Any],
    data_cfg: Mapping[str, Any],
    input_spec: Mapping[str, Any],
    cache_dir: str,
    to_unit: Callable[[torch.Tensor], torch.Tensor],
    accelerator: str = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """The FID feature extractor and a record of what it is (built and cached if needed)."""
    kind = str(fid_cfg.get("extractor", "classifier"))
    if kind not in FID_EXTRACTORS:
        raise ConfigError(f"unknown FID extractor '{kind}'; valid: {', '.join(FID_EXTRACTORS)}")
    if kind == "inception":
        return InceptionFeatures(to_unit), {"fid_extractor": "inception"}
    source_cfg = extractor_source_cfg(data_cfg, fid_cfg, cache_dir, accelerator)
    model_cfg = dict(fid_cfg.get("model") or EXTRACTOR_MODEL)
    backbone, info = PretrainSource(source_cfg).prepare(model_cfg, input_spec)
    return FeatureExtractor(backbone, backbone.num_features), {
        "fid_extractor": "classifier",
        "fid_extractor_key": info.get("source_key"),
        "fid_extractor_test_acc": info.get("source_test_acc"),
    }
