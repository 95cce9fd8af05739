"""A GAN trained on a source data set or class subset (images only), built on demand and cached.

The cache entry holds the discriminator trunk as ``backbone.safetensors`` (the transferred
backbone), ``generator.safetensors`` and ``discriminator_head.safetensors`` (for GAN-to-GAN
transfer), ``samples.png`` from fixed noise, and the feature FID/KID at initialisation and after
training in ``source.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from transferlab.core.checkpoint import cpu_state
from transferlab.core.errors import SourceError
from transferlab.core.store import config_hash, file_sha256
from transferlab.data import ImageClassificationDataModule
from transferlab.metrics import image_quality
from transferlab.models.generators import (
    DCGANGenerator,
    Discriminator,
    check_discriminator_backbone,
    check_generator_fits,
)
from transferlab.modules.gan import (
    build_gan_networks,
    gan_module_from_cfg,
    recalibrate_batchnorm,
)
from transferlab.sources.base import REBUILD_HINT, CachedSource, register_source
from transferlab.sources.cache import ENTRY_META, ENTRY_WEIGHTS, FILES_SHA256
from transferlab.sources.fid import build_feature_extractor
from transferlab.sources.pretrain import DATA_KEYS, pretrain_identity
from transferlab.sources.training import quiet_trainer, source_datamodule
from transferlab.sources.weights import check_finite

log = logging.getLogger(__name__)

GENERATOR_WEIGHTS = "generator.safetensors"
HEAD_WEIGHTS = "discriminator_head.safetensors"
SAMPLES = "samples.png"
# options that change how the GAN is evaluated, not what is built
NON_IDENTITY = ("fid",)


def recalibration_images(
    datamodule: ImageClassificationDataModule, source_cfg: Mapping[str, Any]
) -> torch.Tensor:
    """The real images the discriminator's BatchNorm statistics are re-estimated on: all the
    training images, or with ``limit_train_batches`` (quick runs) a seeded random subset of
    as many as one capped epoch reads. As in Lightning, an int is a batch count (``1``: one
    batch) and a float a fraction (``1.0``: every batch)."""
    images = datamodule.train_set.images
    limit = source_cfg.get("limit_train_batches")
    if limit is None or (isinstance(limit, float) and limit >= 1.0):
        return images
    if isinstance(limit, float):
        count = int(len(images) * limit)
    else:
        count = int(limit) * int(source_cfg.get("batch_size", 64))
    if count >= len(images):
        return images
    generator = torch.Generator().manual_seed(int(source_cfg.get("seed") or 0))
    return images[torch.randperm(len(images), generator=generator)[: max(count, 2)]]


def gan_source_key(
    source_cfg: Mapping[str, Any], model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
) -> str:
    """The cache key of a GAN source: a hash of the config that builds it."""
    identity = pretrain_identity(source_cfg, model_cfg, input_spec)
    identity["source"] = {k: v for k, v in identity["source"].items() if k not in NON_IDENTITY}
    return config_hash({"kind": "gan", **identity})


def gan_datamodule(
    cfg: Mapping[str, Any], input_spec: Mapping[str, Any], seed: int
) -> ImageClassificationDataModule:
    """The images a GAN trains on (labels are ignored), preprocessed like the target's."""
    data_kwargs = {k: cfg[k] for k in DATA_KEYS if k in cfg and k != "augment"}
    return source_datamodule(data_kwargs, input_spec, seed, key="source.classes")


def gan_trainer(cfg: Mapping[str, Any], **kwargs: Any) -> L.Trainer:
    """A quiet Trainer for building a GAN source (no logger, no validation; the GAN module
    checks its losses before each optimizer step)."""
    return quiet_trainer(
        accelerator=cfg.get("accelerator", "cpu"),
        enable_checkpointing=False,
        limit_val_batches=0,
        **kwargs,
    )


def real_images(datamodule: ImageClassificationDataModule, n: int, seed: int) -> torch.Tensor:
    """Up to ``n`` test-split images (a seeded random subset): the real side of FID/KID."""
    images = datamodule.test_set.images
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[:n]]


@register_source("gan")
class GanSource(CachedSource):
    """A GAN trained on ``source.dataset``'s ``source.classes`` images (labels unused); its
    discriminator trunk is the backbone."""

    def identity(
        self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
    ) -> dict[str, Any]:
        return pretrain_identity(self.cfg, model_cfg, input_spec)

    def key(self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]) -> str:
        return gan_source_key(self.cfg, model_cfg, input_spec)

    def check(self, model_cfg: Mapping[str, Any]) -> None:
        check_discriminator_backbone(str(model_cfg["name"]))

    def train(
        self,
        entry: Path,
        weights_path: Path,
        model_cfg: Mapping[str, Any],
        input_spec: Mapping[str, Any],
    ) -> dict[str, Any]:
        return train_gan_source(self.cfg, entry, weights_path, model_cfg, input_spec)


def train_gan_source(
    source_cfg: Mapping[str, Any],
    entry: Path,
    weights_path: Path,
    model_cfg: Mapping[str, Any],
    input_spec: Mapping[str, Any],
) -> dict[str, Any]:
    """Train the GAN; write the discriminator trunk to ``weights_path`` and the generator,
    discriminator head and a sample grid into ``entry``; return its metadata (FID/KID)."""
    started = time.time()
    seed = int(source_cfg.get("seed", 0))
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule = gan_datamodule(source_cfg, input_spec, seed)
    shape = datamodule.input_shape
    generator, discriminator = build_gan_networks(
        model_cfg, source_cfg, shape, datamodule.mean, datamodule.std
    )
    module = gan_module_from_cfg(source_cfg, generator, discriminator)
    fid_cfg = dict(source_cfg.get("fid") or {})
    extractor, extractor_info = build_feature_extractor(
        fid_cfg,
        source_cfg,
        input_spec,
        str(source_cfg["cache_dir"]),
        generator.to_unit,
        str(source_cfg.get("accelerator", "cpu")),
        caps=source_cfg,  # a quick (capped) GAN gets an equally capped extractor
    )
    n = int(fid_cfg.get("num_samples", 2000))
    real = real_images(datamodule, n, seed)
    at_init = image_quality(extractor, real, module.sample(len(real), seed=seed))
    trainer = gan_trainer(
        source_cfg,
        max_epochs=int(source_cfg.get("max_epochs", 5)),
        limit_train_batches=source_cfg.get("limit_train_batches") or 1.0,
    )
    trainer.fit(module, train_dataloaders=datamodule.train_dataloader())
    module.cpu()
    trained = image_quality(extractor, real, module.sample(len(real), seed=seed))
    recalibrate_batchnorm(discriminator.trunk, recalibration_images(datamodule, source_cfg))
    save_file(cpu_state(discriminator.trunk), str(weights_path))
    save_file(cpu_state(discriminator.head), str(entry / HEAD_WEIGHTS))
    save_file(cpu_state(generator), str(entry / GENERATOR_WEIGHTS))
    module.save_samples(entry / SAMPLES)
    log.info("GAN source: feature FID %.2f at init, %.2f trained", at_init["fid"], trained["fid"])
    return {
        "kind": "gan",
        "model": model_cfg["name"],
        "dataset": source_cfg.get("dataset"),
        "classes_seen": datamodule.split.classes,
        "labels_used": False,
        "image_shape": list(shape),
        "gan": {k: source_cfg.get(k) for k in ("loss", "latent_dim", "generator_width")},
        "mean": datamodule.mean,
        "std": datamodule.std,
        "train_images": len(datamodule.train_set),
        "steps": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "fid_init": at_init["fid"],
        "kid_mean_init": at_init["kid_mean"],
        "fid_trained": trained["fid"],
        "kid_mean_trained": trained["kid_mean"],
        "fid_num_samples": len(real),
        **extractor_info,
        # checked with the backbone's hash whenever the entry is opened (a corrupt generator or
        # head makes the entry invalid, so it is rebuilt)
        FILES_SHA256: {
            name: file_sha256(entry / name) for name in (GENERATOR_WEIGHTS, HEAD_WEIGHTS)
        },
        "build_seconds": round(time.time() - started, 2),
    }


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:120]


def _gan_state(entry: Path, name: str) -> dict[str, torch.Tensor]:
    """A weights file of a GAN entry, read and checked to be finite (one line if not)."""
    try:
        state = load_file(str(entry / name))
    except (SafetensorError, OSError) as err:
        # entries written before files_sha256 was recorded are not hash-checked on opening
        raise SourceError(
            f"the GAN source's {name} cannot be read ({_first_line(err)}) in the "
            f"cache entry {entry}: {REBUILD_HINT}"
        ) from None
    check_finite(state, f"the GAN source's {name} (cache entry {entry})", REBUILD_HINT)
    return state


def load_gan_source(
    entry: Path, model_cfg: Mapping[str, Any], image_shape: tuple[int, int, int]
) -> tuple[DCGANGenerator, Discriminator, dict[str, Any]]:
    """The generator and discriminator of a built GAN source, for images of ``image_shape``."""
    meta = json.loads((entry / ENTRY_META).read_text())
    generator, discriminator = build_gan_networks(
        model_cfg, meta["gan"], tuple(meta["image_shape"]), meta["mean"], meta["std"]
    )
    check_generator_fits(generator, image_shape)
    generator.load_state_dict(_gan_state(entry, GENERATOR_WEIGHTS))
    discriminator.trunk.load_state_dict(_gan_state(entry, ENTRY_WEIGHTS))
    discriminator.head.load_state_dict(_gan_state(entry, HEAD_WEIGHTS))
    return generator, discriminator, meta
