"""A supervised pretraining run on a source data set or class subset, built on demand."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import save_file

from transferlab.models import build_backbone
from transferlab.sources.cache import config_hash, ensure_entry
from transferlab.sources.training import source_datamodule, source_trainer
from transferlab.strategies import ScratchModule

log = logging.getLogger(__name__)

# Keys of the source config that do not change what is built.
NON_IDENTITY_KEYS = ("name", "cache_dir", "accelerator")
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


def pretrain_identity(
    source_cfg: Mapping[str, Any], model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything that decides the built weights (and nothing else)."""
    source = {k: v for k, v in source_cfg.items() if k not in NON_IDENTITY_KEYS}
    return {
        "format": FORMAT_VERSION,
        "source": source,
        "model": dict(model_cfg),
        "input": dict(input_spec),
    }


def pretrain_source_key(
    source_cfg: Mapping[str, Any], model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
) -> str:
    """The cache key of a pretraining source: a hash of the config that builds it."""
    return config_hash(pretrain_identity(source_cfg, model_cfg, input_spec))


def _train_source(
    weights_path: Path,
    source_cfg: Mapping[str, Any],
    model_cfg: Mapping[str, Any],
    input_spec: Mapping[str, Any],
    backbone_kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    started = time.time()
    seed = int(source_cfg.get("seed", 0))
    L.seed_everything(seed, workers=True, verbose=False)
    data_kwargs = {k: source_cfg[k] for k in DATA_KEYS if k in source_cfg}
    datamodule = source_datamodule(data_kwargs, input_spec, seed)
    in_chans, height, _ = datamodule.input_shape
    backbone = build_backbone(
        model_cfg["name"],
        in_chans=in_chans,
        input_size=height,
        small_input=model_cfg.get("small_input"),
        **backbone_kwargs,
    )
    module = ScratchModule(
        backbone,
        datamodule.num_classes,
        optimizer=source_cfg.get("optimizer"),
        scheduler=source_cfg.get("scheduler"),
        class_names=datamodule.class_names,
    )
    with tempfile.TemporaryDirectory(prefix="tl-source-") as tmp:
        checkpoint = ModelCheckpoint(dirpath=tmp, monitor="val/acc", mode="max")
        trainer = source_trainer(source_cfg, [checkpoint])
        trainer.fit(module, datamodule)
        best = checkpoint.best_model_path or None
        test_metrics = trainer.test(module, datamodule, ckpt_path=best, verbose=False)[0]
    state = {k: v.detach().cpu().contiguous() for k, v in module.backbone.state_dict().items()}
    save_file(state, str(weights_path))
    return {
        "kind": "pretrain",
        "model": model_cfg["name"],
        "dataset": source_cfg.get("dataset"),
        "classes_seen": datamodule.split.classes,
        "class_names_seen": datamodule.class_names,
        "best_val_acc": float(checkpoint.best_model_score or float("nan")),
        "source_test_acc": float(test_metrics["test/acc"]),
        "epochs": int(trainer.current_epoch),
        "build_seconds": round(time.time() - started, 2),
    }


def ensure_pretrain_source(
    source_cfg: Mapping[str, Any],
    model_cfg: Mapping[str, Any],
    input_spec: Mapping[str, Any],
    backbone_kwargs: Mapping[str, Any],
) -> tuple[Path, bool]:
    """The cache entry of this source, trained first if missing. Returns ``(entry, built_now)``."""
    key = pretrain_source_key(source_cfg, model_cfg, input_spec)
    log.info(
        "source pretrain-%s (%s classes %s)",
        key,
        source_cfg.get("dataset"),
        source_cfg.get("classes"),
    )
    return ensure_entry(
        source_cfg["cache_dir"],
        "pretrain",
        key,
        pretrain_identity(source_cfg, model_cfg, input_spec),
        lambda entry, weights: _train_source(
            weights, source_cfg, model_cfg, input_spec, backbone_kwargs
        ),
    )
