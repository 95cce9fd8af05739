"""Transfer from a GAN: (a) discriminator features to a classifier (``strategy=gan``);
(b) GAN-to-GAN transfer to a small target image set (``strategy=transfer_gan``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transferlab.errors import ConfigError
from transferlab.models import LinearHead
from transferlab.strategies.finetune import FinetuneModule

log = logging.getLogger(__name__)

GAN_FEATURES = ("multilayer", "pooled")
TRANSFER_GAN_INITS = ("source", "scratch")
LOGGED_LOSSES = ("train/d_loss", "train/g_loss")  # epoch means of the last epoch


def multilayer_features(stages: list[nn.Module], images: torch.Tensor, pool: int) -> torch.Tensor:
    """Every stage's output, spatial maps max-pooled to ``pool`` x ``pool``, flattened and
    concatenated (the DCGAN paper's discriminator features)."""
    parts, x = [], images
    for stage in stages:
        x = stage(x)
        part = F.adaptive_max_pool2d(x, pool) if x.dim() == 4 else x
        parts.append(part.flatten(1))
    return torch.cat(parts, dim=1)


class GanFeatureModule(FinetuneModule):
    """A classifier on a (GAN discriminator) trunk's multi-layer features.

    ``features="multilayer"``: the head sees every stage's output max-pooled to ``pool_size``
    squared and standardised by a BatchNorm without affine parameters (still a linear
    classifier at test time); ``"pooled"``: the trunk's own pooled features, as
    :class:`FinetuneModule`. The freezing policy (``mode``) is FinetuneModule's.
    """

    strategy_name = "gan"

    def __init__(
        self, *args: Any, features: str = "multilayer", pool_size: int = 4, **kwargs: Any
    ) -> None:
        kwargs.setdefault("mode", "linear_probe")
        super().__init__(*args, **kwargs)
        if features not in GAN_FEATURES:
            raise ConfigError(f"unknown features '{features}'; valid: {', '.join(GAN_FEATURES)}")
        if int(pool_size) < 1:
            raise ConfigError(f"pool_size must be >= 1, got {pool_size}")
        self.features, self.pool_size = features, int(pool_size)
        if features == "multilayer":
            spec = (kwargs.get("run_config") or {}).get("input_spec")
            if not spec:
                raise ConfigError("strategy=gan with multilayer features needs the input spec")
            dummy = torch.zeros(2, int(spec["channels"]), spec["image_size"], spec["image_size"])
            was_training = self.backbone.training
            self.backbone.eval()
            with torch.no_grad():
                dim = multilayer_features(self.backbone.stages(), dummy, self.pool_size).shape[1]
            self.backbone.train(was_training)
            dropout = float(kwargs.get("head_dropout", 0.0))
            self.head = nn.Sequential(
                nn.BatchNorm1d(dim, affine=False), LinearHead(dim, self.num_classes, dropout)
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.features == "pooled":
            return self.head(self.backbone(images))
        return self.head(multilayer_features(self.backbone.stages(), images, self.pool_size))


# --------------------------------------------------------------------------- transfer_gan


def _gan_options(strategy: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
    return {**strategy, "seed": seed or 0}


def run_transfer_gan(cfg: Any, output_dir: str | Path) -> dict[str, Any]:
    """Train a GAN on the target's few training images, initialised from the source GAN
    (``strategy.init=source``) or at random (``scratch``), for ``strategy.steps`` generator
    steps; write ``results.json`` with ``test/fid``, ``test/kid_mean`` (generated vs real
    target test images) and the same at initialisation (``init/fid``, ``init/kid_mean``)."""
    import hydra
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from transferlab.metrics import build_feature_extractor, image_quality
    from transferlab.pipeline import _instantiate_list, make_datamodule, to_plain, training_record
    from transferlab.results import write_results
    from transferlab.sources import ensure_cached_source
    from transferlab.sources.gan import load_gan_source, real_images
    from transferlab.strategies.gan import SAMPLES_FILE, build_gan_networks, gan_module_from_cfg
    from transferlab.sweeps import run_hash

    started = time.time()
    plain = to_plain(cfg)
    strategy, model_cfg, seed = plain["strategy"], plain["model"], plain.get("seed")
    init = str(strategy.get("init", "source"))
    if init not in TRANSFER_GAN_INITS:
        raise ConfigError(f"unknown strategy.init '{init}'; valid: {', '.join(TRANSFER_GAN_INITS)}")
    if seed is not None:
        L.seed_everything(int(seed), workers=True)
    data_cfg = {**plain["data"], "batch_size": int(strategy.get("batch_size", 64))}
    datamodule, spec = make_datamodule(
        data_cfg, seed, "none", int(model_cfg.get("min_input_size", 1))
    )
    shape = datamodule.input_shape
    if init == "source":
        if plain["source"].get("name") != "gan":
            raise ConfigError(
                f"strategy=transfer_gan strategy.init=source needs source=gan, got "
                f"source={plain['source'].get('name')}; or use strategy.init=scratch"
            )
        entry, built = ensure_cached_source(plain["source"], model_cfg, spec)
        generator, discriminator, meta = load_gan_source(entry, model_cfg, shape)
        for key in ("latent_dim", "generator_width"):
            if meta["gan"].get(key) != strategy.get(key):
                raise ConfigError(
                    f"the source GAN has {key}={meta['gan'].get(key)} but strategy.{key}="
                    f"{strategy.get(key)}; set them equal so init=source and scratch compare"
                )
        generator.mean.copy_(torch.tensor(datamodule.mean).view_as(generator.mean))
        generator.std.copy_(torch.tensor(datamodule.std).view_as(generator.std))
        source_info = {
            "source": "gan",
            "source_key": meta["key"],
            "source_dir": str(entry),
            "source_built_now": built,
            "source_classes_seen": meta["classes_seen"],
            "source_fid_trained": meta["fid_trained"],
        }
    else:
        generator, discriminator = build_gan_networks(
            model_cfg, strategy, shape, datamodule.mean, datamodule.std
        )
        source_info = {"source": "none"}
    fid_cfg = dict(strategy.get("fid") or {})
    cache_dir = str(Path(plain["paths"]["cache_dir"]) / "sources")
    extractor, extractor_info = build_feature_extractor(
        fid_cfg, plain["data"], spec, cache_dir, generator.to_unit, plain["trainer"]["accelerator"]
    )
    real = real_images(datamodule, int(fid_cfg.get("num_samples", 2000)), int(seed or 0))
    module = gan_module_from_cfg(
        _gan_options(strategy, seed), generator, discriminator, sample_dir=output_dir
    )
    at_init = image_quality(extractor, real, module.sample(len(real), seed=int(seed or 0)))

    if seed is not None:  # the same data order and noise for init=source and init=scratch
        L.seed_everything(int(seed), workers=True, verbose=False)
    optimizer_steps = int(strategy["steps"]) * (module.n_critic + 1)
    callbacks: list[Any] = []
    every = strategy.get("checkpoint_every")
    callbacks.append(
        ModelCheckpoint(
            dirpath=str(Path(output_dir) / "checkpoints"),
            save_last=True,
            every_n_train_steps=int(every) * (module.n_critic + 1) if every else None,
        )
    )
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        max_epochs=-1,
        max_steps=optimizer_steps,
        callbacks=callbacks,
        logger=_instantiate_list(cfg.get("logger")) or False,
    )
    trainer.fit(
        module, train_dataloaders=datamodule.train_dataloader(), ckpt_path=plain.get("ckpt_path")
    )
    module.cpu()
    trained = image_quality(extractor, real, module.sample(len(real), seed=int(seed or 0)))
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k in LOGGED_LOSSES}
    metrics = {
        **logged,
        "test/fid": trained["fid"],
        "test/kid_mean": trained["kid_mean"],
        "test/kid_std": trained["kid_std"],
        "init/fid": at_init["fid"],
        "init/kid_mean": at_init["kid_mean"],
    }
    details = {
        "init": init,
        "samples_png": str(Path(output_dir) / SAMPLES_FILE),
        "train_images": len(datamodule.train_set),
        "fid_real_images": len(real),
        "generator_steps": int(strategy["steps"]),
        "optimizer_steps": int(trainer.global_step),
        **extractor_info,
    }
    record = training_record(
        plain,
        output_dir,
        run_hash(cfg),
        source_info,
        metrics,
        started,
        trainer.current_epoch,
        details,
    )
    path = write_results(output_dir, record)
    log.info(
        "transfer_gan init=%s: feature FID %.2f at init, %.2f after %d steps; results in %s",
        init,
        at_init["fid"],
        trained["fid"],
        int(strategy["steps"]),
        path,
    )
    return record
