"""An autoencoder pretrained on unlabelled images, built on demand and cached as a source.

``data: source`` pretrains on the images of a source data set / class subset; ``data:
target_pool`` on the target's training pool with its labels dropped (the classic low-label
protocol): the target's validation images (carved with the run's seed) and test images are never
used. A fraction of the pretraining pool is held out to measure the reconstruction error against
the trivial baseline (predicting the mean training image). The entry holds the encoder as
``backbone.safetensors``, the decoder (and mean image) as ``decoder.safetensors``, and
``reconstructions.png``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from transferlab.core.checkpoint import read_checkpoint
from transferlab.core.errors import ConfigError, DivergenceError, SourceError
from transferlab.core.store import file_sha256, identity_model_config
from transferlab.data.batching import TensorBatchDataset, keep_batch
from transferlab.models import Backbone
from transferlab.models.decoders import build_autoencoder
from transferlab.modules.autoencoder import (
    GRID_FILE,
    AutoencoderModule,
    SourceAutoencoder,
    reconstruction_errors,
    save_reconstruction_grid,
)
from transferlab.modules.callbacks import DivergenceGuard
from transferlab.sources.base import CachedSource, register_source
from transferlab.sources.cache import ENTRY_META
from transferlab.sources.training import SOURCE_LR_HINT, source_datamodule, source_trainer

log = logging.getLogger(__name__)

DATA_MODES = ("source", "target_pool")
NON_IDENTITY_KEYS = ("name", "cache_dir", "accelerator", "allow_overlap")
SOURCE_DATA_KEYS = ("dataset", "root", "download", "dataset_kwargs", "classes")
MODULE_KEYS = ("variant", "noise", "noise_std", "drop_prob", "mask_ratio", "patch_size")
FORMAT_VERSION = 1
DECODER_WEIGHTS = "decoder.safetensors"
NO_LABEL = -1  # the pretraining images carry no labels


def data_mode(source_cfg: Mapping[str, Any]) -> str:
    """``source`` or ``target_pool``; a ConfigError for anything else."""
    mode = str(source_cfg.get("data", "source"))
    if mode not in DATA_MODES:
        raise ConfigError(
            f"source.data={mode!r} is invalid; use source (source.dataset/classes) or "
            "target_pool (the target's training images without labels)"
        )
    return mode


def autoencoder_identity(
    source_cfg: Mapping[str, Any], model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything that decides the built weights: keys of the other data mode are left out."""
    mode = data_mode(source_cfg)
    dropped = (*NON_IDENTITY_KEYS, *(("target",) if mode == "source" else SOURCE_DATA_KEYS))
    source = {k: v for k, v in source_cfg.items() if k not in dropped}
    return {
        "format": FORMAT_VERSION,
        "source": source,
        "model": identity_model_config(model_cfg),
        "input": dict(input_spec),
    }


def pretraining_images(
    source_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(training images, held-out images, what they are) for the configured data mode."""
    mode = data_mode(source_cfg)
    seed = int(source_cfg.get("seed", 0))
    if mode == "source":
        data = {k: source_cfg[k] for k in SOURCE_DATA_KEYS if k in source_cfg}
        split_seed = seed
    else:  # the target's own split: the same validation images are carved out and skipped
        target = dict(source_cfg.get("target") or {})
        data = {k: target[k] for k in SOURCE_DATA_KEYS if k in target}
        data.update(
            val_per_class=target.get("val_per_class"), val_fraction=target.get("val_fraction")
        )
        split_seed = int(target.get("seed") or 0)
    key = "source.classes" if mode == "source" else "data.classes"
    datamodule = source_datamodule(data, input_spec, split_seed, key=key)
    pool = datamodule.train_set.images
    fraction = float(source_cfg.get("holdout_fraction", 0.1))
    if not 0 < fraction < 1:
        raise ConfigError(f"source.holdout_fraction={fraction} is invalid; use a number in (0, 1)")
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
    held = max(1, round(fraction * len(pool)))
    if held >= len(pool):
        raise ConfigError(f"the pretraining pool has only {len(pool)} images; it needs >= 2")
    info = {
        "data": mode,
        "dataset": datamodule.dataset_name,
        "classes_seen": datamodule.split.classes,
        "class_names_seen": datamodule.class_names,
        "images_train": len(pool) - held,
        "images_holdout": held,
    }
    return pool[order[held:].sort().values], pool[order[:held].sort().values], info


def _loader(images: torch.Tensor, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    dataset = TensorBatchDataset(images, torch.full((len(images),), NO_LABEL))
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=keep_batch
    )


@register_source("autoencoder")
class AutoencoderSource(CachedSource):
    """An autoencoder (plain, denoising or masked) pretrained on unlabelled images; its
    encoder is the backbone, and it hands its decoder to the target module."""

    def identity(
        self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
    ) -> dict[str, Any]:
        return autoencoder_identity(self.cfg, model_cfg, input_spec)

    def check(self, model_cfg: Mapping[str, Any]) -> None:
        data_mode(self.cfg)

    def trained_on(self) -> Mapping[str, Any] | None:
        """The source classes in ``data: source`` mode; None on the target's own pool (its
        unlabelled training images: the intended protocol, not an overlap)."""
        return super().trained_on() if data_mode(self.cfg) == "source" else None

    def describe(self) -> str:
        return f"{self.cfg.get('variant')}, data={self.cfg.get('data', 'source')}"

    def train(
        self,
        entry: Path,
        weights_path: Path,
        model_cfg: Mapping[str, Any],
        input_spec: Mapping[str, Any],
    ) -> dict[str, Any]:
        return train_autoencoder(self, entry, weights_path, model_cfg, input_spec)

    def extras(
        self, info: Mapping[str, Any], backbone: Backbone, input_spec: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {"source_autoencoder": load_source_autoencoder(Path(info["source_dir"]))}


def load_source_autoencoder(entry: Path) -> SourceAutoencoder:
    """The decoder, mean image and held-out errors of a built autoencoder entry."""
    meta = json.loads((entry / ENTRY_META).read_text())
    decoder_file = entry / DECODER_WEIGHTS
    if not decoder_file.is_file() or meta.get("decoder_sha256") != file_sha256(decoder_file):
        raise SourceError(
            f"autoencoder source {entry} has a missing or corrupt {DECODER_WEIGHTS}; "
            "delete the entry and run again to rebuild it"
        )
    state = load_file(str(decoder_file))
    mean_image = state.pop("mean_image")
    return SourceAutoencoder(
        decoder_state=state,
        mean_image=mean_image,
        holdout_recon_loss=meta.get("holdout_recon_loss"),
        holdout_mean_image_loss=meta.get("holdout_mean_image_loss"),
    )


def train_autoencoder(
    source: AutoencoderSource,
    entry: Path,
    weights_path: Path,
    model_cfg: Mapping[str, Any],
    input_spec: Mapping[str, Any],
) -> dict[str, Any]:
    """Pretrain the autoencoder, keep the best epoch on the held-out images, write the encoder
    to ``weights_path`` and the decoder, mean image and a reconstruction grid into ``entry``."""
    started = time.time()
    source_cfg = source.cfg
    seed = int(source_cfg.get("seed", 0))
    train_images, held_images, info = pretraining_images(source_cfg, input_spec)
    L.seed_everything(seed, workers=True, verbose=False)
    shape = tuple(int(s) for s in train_images.shape[1:])
    backbone = source.build(model_cfg, {"channels": shape[0], "image_size": shape[1]})
    mean_image = train_images.mean(dim=0)
    module = AutoencoderModule(
        build_autoencoder(backbone, shape),
        mean_image,
        optimizer=source_cfg.get("optimizer"),
        scheduler=source_cfg.get("scheduler"),
        **{k: source_cfg[k] for k in MODULE_KEYS if source_cfg.get(k) is not None},
    )
    batch_size = int(source_cfg.get("batch_size", 128))
    checkpoints = entry / "checkpoints"
    shutil.rmtree(checkpoints, ignore_errors=True)
    checkpoint = ModelCheckpoint(
        dirpath=checkpoints, monitor="val/recon_loss", mode="min", save_last=True
    )
    guard = DivergenceGuard("autoencoder pretraining", "the reconstruction loss", SOURCE_LR_HINT)
    trainer = source_trainer(source_cfg, [checkpoint], guard=guard)
    try:
        trainer.fit(
            module,
            _loader(train_images, batch_size, shuffle=True, seed=seed),
            _loader(held_images, 512, shuffle=False, seed=seed),
        )
    except DivergenceError as err:
        last = Path(checkpoint.last_model_path or checkpoints / "last.ckpt")
        kept = f"the last good checkpoint is {last}" if last.is_file() else "no epoch finished"
        raise DivergenceError(f"{err}; {kept}") from None
    if checkpoint.best_model_path:
        payload = read_checkpoint(checkpoint.best_model_path)
        module.load_state_dict(payload["state_dict"])
    autoencoder = module.autoencoder.cpu()
    errors = reconstruction_errors(autoencoder, held_images, mean_image)
    save_reconstruction_grid(module.cpu(), held_images[:8], entry / GRID_FILE)
    decoder_state = {
        k: v.detach().contiguous() for k, v in autoencoder.decoder.state_dict().items()
    }
    decoder_state["mean_image"] = mean_image.contiguous()
    save_file(decoder_state, str(entry / DECODER_WEIGHTS))
    state = {k: v.detach().contiguous() for k, v in autoencoder.backbone.state_dict().items()}
    save_file(state, str(weights_path))
    shutil.rmtree(checkpoints, ignore_errors=True)
    log.info(
        "autoencoder held-out reconstruction MSE %.4f vs %.4f predicting the mean image",
        errors["recon_loss"],
        errors["mean_image_loss"],
    )
    return {
        "kind": "autoencoder",
        "model": model_cfg["name"],
        "variant": module.variant,
        **info,
        "holdout_recon_loss": errors["recon_loss"],
        "holdout_mean_image_loss": errors["mean_image_loss"],
        "holdout_recon_vs_mean_image": errors["recon_vs_mean_image"],
        "best_val_recon_loss": float(checkpoint.best_model_score or float("nan")),
        "epochs": int(trainer.current_epoch),
        "decoder_sha256": file_sha256(entry / DECODER_WEIGHTS),
        "build_seconds": round(time.time() - started, 2),
    }
