"""The ``transfer_gan`` task: GAN-to-GAN transfer. A GAN is trained on the target's few
training images, initialised from the source GAN (``strategy.init=source``) or at random
(``scratch``), and scored by feature FID/KID against real target test images."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from transferlab.core.errors import ConfigError
from transferlab.core.results import is_debug_trainer
from transferlab.core.specs import InputRequirement
from transferlab.data.target import target_datamodule
from transferlab.metrics import image_quality
from transferlab.modules.gan import SAMPLES_FILE, build_gan_networks, gan_module_from_cfg
from transferlab.modules.registry import STRATEGIES, StrategySpec
from transferlab.sources import check_source_overlap, ensure_cached_source, make_source
from transferlab.sources.fid import build_feature_extractor
from transferlab.sources.gan import load_gan_source, real_images
from transferlab.tasks.context import RunContext, register_task

log = logging.getLogger(__name__)

# the FID extractor's training in a debugging run: one epoch of two batches (its default is two
# epochs of every training image, about 80 s on 2 cores for Fashion-MNIST)
DEBUG_EXTRACTOR_CAPS = {"max_epochs": 1, "limit_train_batches": 2}

STRATEGIES.register("transfer_gan", StrategySpec(None, uses_source=False, task="transfer_gan"))

TRANSFER_GAN_INITS = ("source", "scratch")
LOGGED_LOSSES = ("train/d_loss", "train/g_loss")  # epoch means of the last epoch


def _gan_options(strategy: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
    return {**strategy, "seed": seed or 0}


@register_task("transfer_gan")
def run_transfer_gan(ctx: RunContext) -> dict[str, Any]:
    """Train the target GAN for ``strategy.steps`` generator steps; write ``results.json`` with
    ``test/fid``, ``test/kid_mean`` (generated vs real target test images) and the same at
    initialisation (``init/fid``, ``init/kid_mean``)."""
    plain, output_dir = ctx.plain, ctx.output_dir
    strategy, model_cfg, seed = plain["strategy"], plain["model"], ctx.seed
    init = str(strategy.get("init", "source"))
    if init not in TRANSFER_GAN_INITS:
        raise ConfigError(f"unknown strategy.init '{init}'; valid: {', '.join(TRANSFER_GAN_INITS)}")
    ctx.seed_everything()
    data_cfg = {**plain["data"], "batch_size": int(strategy.get("batch_size", 64))}
    needs = InputRequirement(min_size=int(model_cfg.get("min_input_size", 1)))
    datamodule, spec = target_datamodule(data_cfg, seed, needs)
    shape = datamodule.input_shape
    if init == "source":
        if plain["source"].get("name") != "gan":
            raise ConfigError(
                f"strategy=transfer_gan strategy.init=source needs source=gan, got "
                f"source={plain['source'].get('name')}; or use strategy.init=scratch"
            )
        overlap = check_source_overlap(make_source(plain["source"]), datamodule)
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
            **overlap,
        }
    else:
        generator, discriminator = build_gan_networks(
            model_cfg, strategy, shape, datamodule.mean, datamodule.std
        )
        source_info = {"source": "none"}
    ctx.record.update(input_spec=dict(spec), source_info=source_info)
    fid_cfg = dict(strategy.get("fid") or {})
    extractor, extractor_info = build_feature_extractor(
        fid_cfg,
        plain["data"],
        spec,
        str(ctx.cache_dir),
        generator.to_unit,
        plain["trainer"]["accelerator"],
        # a debugging run (fast_dev_run, limit_*_batches) gets an equally small extractor
        caps=DEBUG_EXTRACTOR_CAPS if is_debug_trainer(plain["trainer"]) else None,
    )
    real = real_images(datamodule, int(fid_cfg.get("num_samples", 2000)), ctx.split_seed)
    module = gan_module_from_cfg(
        _gan_options(strategy, seed), generator, discriminator, sample_dir=output_dir
    )
    at_init = image_quality(extractor, real, module.sample(len(real), seed=ctx.split_seed))

    ctx.seed_everything(verbose=False)  # the same data order and noise for both inits
    every = strategy.get("checkpoint_every")
    checkpoint = ModelCheckpoint(
        dirpath=str(Path(output_dir) / "checkpoints"),
        save_last=True,
        every_n_train_steps=int(every) * (module.n_critic + 1) if every else None,
    )
    trainer = ctx.trainer(
        callbacks=[checkpoint],
        max_epochs=-1,
        max_steps=int(strategy["steps"]) * (module.n_critic + 1),
    )
    ctx.fit(trainer, module, train_dataloaders=datamodule.train_dataloader())
    module.cpu()
    trained = image_quality(extractor, real, module.sample(len(real), seed=ctx.split_seed))
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
    record = ctx.finish(source_info, metrics, trainer.current_epoch, details)
    log.info(
        "transfer_gan init=%s: feature FID %.2f at init, %.2f after %d steps",
        init,
        at_init["fid"],
        trained["fid"],
        int(strategy["steps"]),
    )
    return record
