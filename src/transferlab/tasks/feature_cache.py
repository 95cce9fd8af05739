"""The on-disk cache of a frozen backbone's pooled features: one entry per (backbone weights,
split, preprocessing, precision), ``<paths.cache_dir>/features/<backbone>-<key>/``, built
under a file lock and renamed into place, read without the lock (sources/cache.py, whose
entry format it shares: a payload file and a JSON file holding the payload's SHA-256)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from transferlab.core.errors import SourceError
from transferlab.core.store import config_hash, identity_model_config, tensors_sha256
from transferlab.data.datamodule import ImageClassificationDataModule
from transferlab.data.switched_inputs import SPLITS
from transferlab.sources.cache import entry_is_valid, get_or_build

log = logging.getLogger(__name__)

# bumped when the way features are computed changes (old entries are then not read)
FEATURE_VERSION = 1
FEATURE_FILES = ("features.safetensors", "features.json")
# data keys that change batching or augmentation, not which images are featurised or how
LOADER_ONLY_DATA_KEYS = (
    "batch_size",
    "eval_batch_size",
    "num_workers",
    "download",
    "augment",
    "min_samples_per_epoch",
)


def feature_identity(
    backbone: nn.Module,
    model_cfg: Mapping[str, Any],
    data_cfg: Mapping[str, Any],
    datamodule: ImageClassificationDataModule,
    input_spec: Mapping[str, Any],
    precision: str,
) -> dict[str, Any]:
    """What decides the cached features: the backbone's weights (whatever their source, after
    layer transfer), the model and data config (but batching and augmentation), the split
    (indices and labels), the normalisation statistics, the input spec and the precision."""
    split = datamodule.split
    labels = {s: getattr(datamodule, f"{s}_set").labels for s in SPLITS}
    return {
        "version": FEATURE_VERSION,
        "weights_sha256": tensors_sha256(backbone.state_dict()),
        "model": identity_model_config(model_cfg),
        "data": {k: v for k, v in data_cfg.items() if k not in LOADER_ONLY_DATA_KEYS},
        "split_sha256": tensors_sha256(
            {**{s: getattr(split, s) for s in SPLITS}, **{f"{s}.labels": labels[s] for s in SPLITS}}
        ),
        "mean": datamodule.mean,
        "std": datamodule.std,
        "input_spec": dict(input_spec),
        "precision": precision,
    }


def feature_entry(cache_dir: Path, backbone_name: str, identity: Mapping[str, Any]) -> Path:
    """The cache entry of ``identity``: ``<cache_dir>/features/<backbone>-<key>``."""
    return cache_dir.expanduser() / "features" / f"{backbone_name}-{config_hash(identity)}"


def load_or_compute(
    entry: Path,
    identity: Mapping[str, Any],
    compute: Callable[[], dict[str, torch.Tensor]],
) -> tuple[dict[str, torch.Tensor], str]:
    """The features of ``entry``: read (``"read"``), or computed with ``compute()`` and
    written first (``"built"``); when the cache cannot be written they are computed for this
    run only (``"computed (not cached)"``, with a warning)."""
    computed: dict[str, torch.Tensor] = {}

    def build(tmp: Path) -> dict[str, Any]:
        computed.update(compute())
        save_file(computed, str(tmp))
        shapes = {name: list(t.shape) for name, t in computed.items()}
        return {"identity": dict(identity), "shapes": shapes}

    try:
        _, built = get_or_build(entry, build, FEATURE_FILES)
    except SourceError:  # no write access where the entry should be built
        log.warning(
            "the feature cache %s cannot be written: features computed for this run only",
            entry.parent,
        )
        return compute(), "computed (not cached)"
    if built:
        return computed, "built"
    return load_file(str(entry / FEATURE_FILES[0])), "read"


def read_entry(entry: Path) -> dict[str, torch.Tensor] | None:
    """The features of ``entry`` if it is a valid entry (nothing is built), else None."""
    if not entry_is_valid(entry, FEATURE_FILES):
        return None
    return load_file(str(entry / FEATURE_FILES[0]))
