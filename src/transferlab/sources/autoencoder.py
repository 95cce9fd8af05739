"""An autoencoder pretrained on unlabelled images, built on demand and cached as a source.

The data modes (``data: source`` or ``target_pool``) and the held-out split are those of
:mod:`transferlab.sources.unlabelled`; the held-out images measure the reconstruction error
against the trivial baseline (predicting the mean training image). The entry holds the encoder as
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
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import load_file, save_file

from transferlab.core.checkpoint import read_checkpoint
from transferlab.core.errors import DivergenceError, SourceError
from transferlab.core.store import file_sha256
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
from transferlab.sources.base import register_source
from transferlab.sources.cache import ENTRY_META
from transferlab.sources.training import SOURCE_LR_HINT, source_trainer
from transferlab.sources.unlabelled import (
    UnlabelledSource,
    image_loader,
    pretraining_images,
    unlabelled_identity,
)

log = logging.getLogger(__name__)

MODULE_KEYS = ("variant", "noise", "noise_std", "drop_prob", "mask_ratio", "patch_size")
FORMAT_VERSION = 1
DECODER_WEIGHTS = "decoder.safetensors"


def autoencoder_identity(
    source_cfg: Mapping[str, Any], model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything that decides the built weights: keys of the other data mode are left out."""
    return unlabelled_identity(source_cfg, model_cfg, input_spec, FORMAT_VERSION)


@register_source("autoencoder")
class AutoencoderSource(UnlabelledSource):
    """An autoencoder (plain, denoising or masked) pretrained on unlabelled images; its
    encoder is the backbone, and it hands its decoder to the target module."""

    format_version = FORMAT_VERSION

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
            image_loader(train_images, batch_size, shuffle=True, seed=seed),
            image_loader(held_images, 512, shuffle=False, seed=seed),
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
