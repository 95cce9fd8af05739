"""The ``adapt`` task (``strategy=adapt``): train (or reuse) the source model, adapt it with
unlabelled target images, test on the shifted target.

It writes ``results.json`` with the same format and metric names as every other strategy;
``test/acc`` and ``test/acc_per_class_mean`` are measured on the shifted target test split.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from torch.utils.data import DataLoader

from transferlab.core.errors import ConfigError
from transferlab.core.schema import check_arguments
from transferlab.data.domains import Domains, build_domains, make_loader
from transferlab.data.shift import parse_shift
from transferlab.modules import ClassifierModule, FreezeSchedule
from transferlab.modules.adapt import ADAPT_METHODS, AdaptMethod
from transferlab.modules.classifier import CLASSIFIER_OPTIONS
from transferlab.modules.registry import STRATEGIES, StrategySpec
from transferlab.sources import make_source
from transferlab.sources.adapt import ensure_source_model, load_source_model
from transferlab.sources.cache import ENTRY_META
from transferlab.tasks.context import RunContext, register_task

log = logging.getLogger(__name__)
STRATEGIES.register("adapt", StrategySpec(None, uses_source=False, task="adapt"))

SELECT_ON = ("source_val", "target_val", "last")
UNSUPPORTED_SOURCES = ("imagenet", "checkpoint")


def adapt_method(strategy: Mapping[str, Any]) -> tuple[str, AdaptMethod]:
    """The configured method's name and spec (a ConfigError naming the valid ones)."""
    name = str(strategy.get("method"))
    return name, ADAPT_METHODS.get(name)


def check_settings(plain: Mapping[str, Any]) -> None:
    """Reject settings that make no sense for adaptation, with one line each."""
    strategy = plain["strategy"]
    adapt_method(strategy)
    freeze = dict(strategy.get("freeze") or {})
    check_arguments("strategy.freeze", freeze, [FreezeSchedule])
    FreezeSchedule(**freeze)
    if strategy.get("select_on") not in SELECT_ON:
        raise ConfigError(
            f"strategy.select_on={strategy.get('select_on')!r} is invalid; use one of "
            f"{', '.join(SELECT_ON)}"
        )
    if parse_shift(strategy.get("target_shift")) is None:
        raise ConfigError(
            "strategy.target_shift changes nothing, so there is no domain to adapt to; set e.g. "
            "strategy.target_shift.invert=true or strategy.target_shift.noise_std=0.5"
        )
    source = str(plain["source"].get("name", "none"))
    if source in UNSUPPORTED_SOURCES:
        raise ConfigError(
            f"strategy=adapt trains its own source model on the clean source images; "
            f"source={source} is not supported with it (use source=none)"
        )


def source_recipe(plain: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """How the source model is trained (part of its cache key, with the data and model)."""
    strategy, trainer = plain["strategy"], plain["trainer"]
    return {
        "epochs": int(strategy["source_epochs"]),
        "optimizer": strategy.get("source_optimizer"),
        "scheduler": strategy.get("source_scheduler"),
        "limit_train_batches": strategy.get("source_limit_train_batches"),
        "batch_size": int(plain["data"]["batch_size"]),
        "target_fraction": float(strategy["target_fraction"]),
        "fast_dev_run": bool(trainer.get("fast_dev_run")),
        "seed": seed,
    }


def build_module(
    name: str,
    method: AdaptMethod,
    domains: Domains,
    plain: Mapping[str, Any],
) -> ClassifierModule:
    """The method's module around a fresh backbone (the source weights are loaded next)."""
    strategy = plain["strategy"]
    backbone = make_source({"name": "none"}).build(plain["model"], domains.input_spec)
    kwargs = {k: strategy[k] for k in CLASSIFIER_OPTIONS if strategy.get(k) is not None}
    kwargs["freeze"] = FreezeSchedule(**dict(strategy.get("freeze") or {}))
    own = dict(strategy.get(name) or {}) if method.module is not ClassifierModule else {}
    try:
        return (method.module or ClassifierModule)(
            backbone,
            domains.num_classes,
            class_names=domains.class_names,
            input_shape=domains.input_spec.shape,
            **kwargs,
            **own,
        )
    except TypeError as err:
        raise ConfigError(
            f"strategy.{name} has an option the method does not take: {err}"
        ) from None


def train_loaders(
    method: AdaptMethod, domains: Domains, batch_size: int, seed: int
) -> DataLoader | dict[str, DataLoader]:
    """What the method trains on: target labels only for the oracle."""
    if method.target_batches == "labeled":
        return make_loader(domains.target_train, batch_size, shuffle=True, seed=seed)
    loaders = {
        "target": make_loader(domains.target_unlabeled(), batch_size, shuffle=True, seed=seed + 1)
    }
    if method.source_batches:
        loaders["source"] = make_loader(domains.source_train, batch_size, shuffle=True, seed=seed)
    return loaders


@register_task("adapt")
def run_adapt(ctx: RunContext) -> dict[str, Any]:
    """Run one adaptation method; write ``results.json``."""
    plain = ctx.plain
    check_settings(plain)
    strategy, data_cfg = plain["strategy"], plain["data"]
    name, method = adapt_method(strategy)
    seed = ctx.split_seed
    ctx.seed_everything()
    domains = build_domains(
        data_cfg,
        strategy["target_shift"],
        seed,
        float(strategy["target_fraction"]),
        int(plain["model"].get("min_input_size", 1)),
    )
    recipe = {**source_recipe(plain, seed), "accelerator": plain["trainer"]["accelerator"]}
    entry, built = ensure_source_model(domains, data_cfg, plain["model"], recipe, ctx.cache_dir)
    meta = json.loads((entry / ENTRY_META).read_text())
    source_info = {
        "source": "adapt_source",
        "source_key": meta["key"],
        "source_dir": str(entry),
        "source_built_now": built,
        "source_test_acc": meta.get("source_test_acc"),
        "shift": parse_shift(strategy["target_shift"]).describe(),
        "source_images": len(domains.source_train),
        "target_images": len(domains.target_train),
    }
    log.info("source model %s: clean test acc %.3f", entry.name, meta["source_test_acc"])
    ctx.seed_everything(verbose=False)  # the same init and data order, cache warm or cold
    ctx.record.update(input_spec=dict(domains.input_spec), source_info=source_info)
    module = build_module(name, method, domains, plain)
    load_source_model(entry, meta, module.backbone, module.head)
    test_loader = make_loader(domains.target_test, int(data_cfg["eval_batch_size"]), False)
    if method.module is None:  # source-only: the source model as it is
        trainer = ctx.trainer(with_callbacks=False)
        metrics = ctx.test(trainer, module, test_loader, None)
        epochs = 0
    else:
        trainer = ctx.trainer()
        on_target = strategy["select_on"] == "target_val"  # target labels pick the epoch
        val_set = domains.target_val if on_target else domains.source_val
        val_loader = make_loader(val_set, int(data_cfg["eval_batch_size"]), False)
        loaders = train_loaders(method, domains, int(data_cfg["batch_size"]), seed)
        metrics = ctx.fit_and_test(
            trainer,
            module,
            test_loader,
            select_best=strategy["select_on"] != "last",
            train_dataloaders=loaders,
            val_dataloaders=val_loader,
        )
        if metrics is None:  # a DDP rank > 0
            return {}
        epochs = trainer.current_epoch
    return ctx.finish(source_info, metrics, epochs, module.test_details)
