"""A supervised pretraining run on a source data set or class subset, built on demand."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from transferlab.core.checkpoint import cpu_state
from transferlab.core.store import config_hash, file_sha256, identity_model_config
from transferlab.models import Backbone
from transferlab.modules import ScratchModule
from transferlab.sources.base import CachedSource, NoSourceHead, linear_head, register_source
from transferlab.sources.cache import FILES_SHA256
from transferlab.sources.training import fit_best_and_test, source_datamodule, source_trainer

log = logging.getLogger(__name__)

# Keys of the source config that do not change what is built (allow_overlap only lets a run
# use the source on overlapping target classes: sources/target_classes.py).
NON_IDENTITY_KEYS = ("name", "cache_dir", "accelerator", "allow_overlap")
DATA_KEYS = (
    "dataset",
    "root",
    "classes",
    "labels_per_class",
    "label_fraction",
    "val_per_class",
    "val_fraction",
    "batch_size",
    "augment",
    "download",
    "dataset_kwargs",
)
FORMAT_VERSION = 1
# the pretraining classifier's head (source classes: fc.weight, fc.bias), kept for
# regularizer=cotuning and scores such as LEEP; entries built before it was kept have none (not
# part of the key: the backbone is the same)
HEAD_WEIGHTS = "head.safetensors"


def pretrain_identity(
    source_cfg: Mapping[str, Any], model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything that decides the built weights (and nothing else)."""
    source = {k: v for k, v in source_cfg.items() if k not in NON_IDENTITY_KEYS}
    return {
        "format": FORMAT_VERSION,
        "source": source,
        "model": identity_model_config(model_cfg),
        "input": dict(input_spec),
    }


def pretrain_source_key(
    source_cfg: Mapping[str, Any], model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
) -> str:
    """The cache key of a pretraining source: a hash of the config that builds it."""
    return config_hash(pretrain_identity(source_cfg, model_cfg, input_spec))


@register_source("pretrain")
class PretrainSource(CachedSource):
    """Supervised pretraining of the backbone (with a linear head) on ``source.dataset``'s
    ``source.classes``; the best-on-validation epoch is kept, backbone and head (the head for
    ``regularizer=cotuning``)."""

    has_classifier_head = True

    def classifier_head(self, info: Mapping[str, Any], backbone: Backbone) -> nn.Module:
        path = Path(str(info.get("source_dir"))) / HEAD_WEIGHTS
        if not path.is_file():
            raise NoSourceHead(
                f"source entry {path.parent} was built before sources kept their classifier "
                "head (regularizer=cotuning and LEEP/NCE need it); delete that directory and "
                "run again to rebuild it"
            )
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise NoSourceHead(f"the source head {path} cannot be read ({err})") from None
        return linear_head(state, "fc.", f"source entry {path.parent}")

    def identity(
        self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
    ) -> dict[str, Any]:
        return pretrain_identity(self.cfg, model_cfg, input_spec)

    def train(
        self,
        entry: Path,
        weights_path: Path,
        model_cfg: Mapping[str, Any],
        input_spec: Mapping[str, Any],
    ) -> dict[str, Any]:
        started = time.time()
        source_cfg = self.cfg
        seed = int(source_cfg.get("seed", 0))
        L.seed_everything(seed, workers=True, verbose=False)
        data_kwargs = {k: source_cfg[k] for k in DATA_KEYS if k in source_cfg}
        datamodule = source_datamodule(data_kwargs, input_spec, seed, key="source.classes")
        datamodule.check_class_count(2, "supervised pretraining (source=pretrain)")
        in_chans, height, _ = datamodule.input_shape
        backbone = self.build(model_cfg, {"channels": in_chans, "image_size": height})
        module = ScratchModule(
            backbone,
            datamodule.num_classes,
            optimizer=source_cfg.get("optimizer"),
            scheduler=source_cfg.get("scheduler"),
            class_names=datamodule.class_names,
        )
        scores = fit_best_and_test(
            module,
            lambda callbacks: source_trainer(source_cfg, callbacks),
            [datamodule],
            datamodule,
        )
        save_file(cpu_state(module.backbone), str(weights_path))
        save_file(cpu_state(module.head), str(entry / HEAD_WEIGHTS))
        return {
            "kind": "pretrain",
            "model": model_cfg["name"],
            "dataset": source_cfg.get("dataset"),
            "classes_seen": datamodule.split.classes,
            "class_names_seen": datamodule.class_names,
            **scores,
            FILES_SHA256: {HEAD_WEIGHTS: file_sha256(entry / HEAD_WEIGHTS)},
            "build_seconds": round(time.time() - started, 2),
        }
