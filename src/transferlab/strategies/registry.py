"""Strategy names -> LightningModule classes, and whether each needs a source."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transferlab.errors import ConfigError
from transferlab.models import Backbone
from transferlab.strategies.autoencoder import AutoencoderTransferModule
from transferlab.strategies.base import ClassifierModule
from transferlab.strategies.finetune import FinetuneModule, ScratchModule
from transferlab.strategies.gan_transfer import GanFeatureModule
from transferlab.strategies.optim import check_optim_config


@dataclass(frozen=True)
class StrategySpec:
    """How a strategy is built: its module class, whether it starts from a source,
    and which of its config keys are its own constructor arguments."""

    module: type[ClassifierModule] | None
    uses_source: bool
    own_keys: tuple[str, ...] = ()
    # "module:function" of a run function ``(cfg: DictConfig, output_dir) -> results record``
    # for strategies that are not a classifier trained by the default pipeline (zero-shot,
    # adaptation, GAN-to-GAN transfer); None = the default pipeline (pipeline.run_training)
    runner: str | None = None
    # the one source kind this strategy transfers from (None: any source)
    required_source: str | None = None


STRATEGIES: dict[str, StrategySpec] = {
    "scratch": StrategySpec(ScratchModule, uses_source=False),
    "finetune": StrategySpec(
        FinetuneModule,
        uses_source=True,
        own_keys=(
            "mode",
            "backbone_lr_ratio",
            "freeze_stages",
            "lp_epochs",
            "unfreeze_every",
            "transfer_stages",
        ),
    ),
}
# fine-tuning of an autoencoder source's encoder, writing a reconstruction grid per run
STRATEGIES["autoencoder"] = StrategySpec(
    AutoencoderTransferModule,
    uses_source=True,
    own_keys=STRATEGIES["finetune"].own_keys,
    required_source="autoencoder",
)
# unsupervised domain adaptation (no target labels): its own runner trains the source model
STRATEGIES["adapt"] = StrategySpec(
    None, uses_source=False, runner="transferlab.adapt.runner:run_adapt"
)
# a classifier on a GAN discriminator's (multi-layer) features; GAN-to-GAN transfer has its runner
STRATEGIES["gan"] = StrategySpec(
    GanFeatureModule,
    uses_source=True,
    own_keys=(*STRATEGIES["finetune"].own_keys, "features", "pool_size"),
    required_source="gan",
)
STRATEGIES["transfer_gan"] = StrategySpec(
    None, uses_source=False, runner="transferlab.strategies.gan_transfer:run_transfer_gan"
)
# zero-shot recognition from class semantics (eszsl, sae, bilinear, fclswgan, clip): its runner
STRATEGIES["zeroshot"] = StrategySpec(
    None, uses_source=True, runner="transferlab.zeroshot.runner:run_zeroshot"
)
COMMON_KEYS = ("optimizer", "scheduler", "head_dropout", "label_smoothing")


def available_strategies() -> list[str]:
    return sorted(STRATEGIES)


def strategy_spec(name: str) -> StrategySpec:
    """The spec for ``name``; a ConfigError listing valid names otherwise."""
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{name}'; valid: {', '.join(available_strategies())}")
    return STRATEGIES[name]


def check_strategy_config(cfg: Mapping[str, Any]) -> None:
    """Fail fast, before any source is built, on options the strategy would refuse."""
    spec = strategy_spec(str(cfg["name"]))
    if spec.module is None:
        return
    check_optim_config(cfg.get("optimizer"), cfg.get("scheduler"))
    checker = getattr(spec.module, "check_options", None)
    if checker is not None:
        checker(**{k: cfg[k] for k in spec.own_keys if k in cfg and cfg[k] is not None})


def build_strategy(
    cfg: Mapping[str, Any],
    backbone: Backbone,
    num_classes: int,
    class_names: list[str] | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> ClassifierModule:
    """Instantiate the strategy module described by the ``strategy`` config group."""
    spec = strategy_spec(str(cfg["name"]))
    if spec.module is None:
        raise ConfigError(f"strategy '{cfg['name']}' has its own runner, not a classifier module")
    kwargs = {k: cfg[k] for k in COMMON_KEYS + spec.own_keys if k in cfg and cfg[k] is not None}
    return spec.module(
        backbone, num_classes, class_names=class_names, run_config=run_config, **kwargs
    )
