"""The FID/KID feature extractor that works offline.

The default extractor (``extractor: classifier``) is the penultimate layer (pooled features) of
a supervised classifier trained on *all* classes of the data set: a cached ``pretrain`` source
whose config depends only on the data set, the extractor model and the input spec, so every
run on that data compares against the same extractor. ``extractor: inception`` uses
torchmetrics' Inception-v3.

The extractor never trains longer than the run that asks for it: the ``caps`` given (a GAN
source's ``max_epochs`` / ``limit_train_batches``, which quick experiments set) lower its
default training; keys under ``fid.training`` are taken as given.
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
# training keys a caller's caps lower (never raise)
CAPPED = ("max_epochs", "limit_train_batches")


def capped_training(
    fid_cfg: Mapping[str, Any], caps: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The extractor's training keys: the defaults lowered to ``caps``, then ``fid.training``."""
    training = dict(EXTRACTOR_TRAINING)
    for key in CAPPED:
        cap = (caps or {}).get(key)
        if cap is not None and (training.get(key) is None or cap < training[key]):
            training[key] = cap
    return {**training, **dict(fid_cfg.get("training") or {})}


def extractor_source_cfg(
    data_cfg: Mapping[str, Any],
    fid_cfg: Mapping[str, Any],
    cache_dir: str,
    accelerator: str,
    caps: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``pretrain`` source config of the extractor classifier for this data set."""
    training = capped_training(fid_cfg, caps)
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
    caps: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The FID feature extractor and a record of what it is (built and cached if needed;
    ``caps``: training limits its classifier may not exceed)."""
    kind = str(fid_cfg.get("extractor", "classifier"))
    if kind not in FID_EXTRACTORS:
        raise ConfigError(f"unknown FID extractor '{kind}'; valid: {', '.join(FID_EXTRACTORS)}")
    if kind == "inception":
        return InceptionFeatures(to_unit), {"fid_extractor": "inception"}
    source_cfg = extractor_source_cfg(data_cfg, fid_cfg, cache_dir, accelerator, caps)
    model_cfg = dict(fid_cfg.get("model") or EXTRACTOR_MODEL)
    backbone, info = PretrainSource(source_cfg).prepare(model_cfg, input_spec)
    return FeatureExtractor(backbone, backbone.num_features), {
        "fid_extractor": "classifier",
        "fid_extractor_key": info.get("source_key"),
        "fid_extractor_test_acc": info.get("source_test_acc"),
    }
