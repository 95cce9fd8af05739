"""config -> data module + backbone (+ source) -> strategy -> Trainer -> results file."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from transferlab.callbacks import RNGStateCheckpoint
from transferlab.data import ImageClassificationDataModule
from transferlab.distributed import (
    best_score_from_checkpoint,
    is_distributed,
    launch_overrides,
    leave_process_group,
    single_device_overrides,
)
from transferlab.errors import CheckpointError, ConfigError
from transferlab.perf import apply_perf
from transferlab.results import run_identity, write_results
from transferlab.sources import prepare_backbone
from transferlab.sources.checkpoint import read_checkpoint, state_mismatch
from transferlab.strategies import ClassifierModule, build_strategy, strategy_spec
from transferlab.strategies.registry import check_strategy_config
from transferlab.sweeps import run_hash

log = logging.getLogger(__name__)

REPORTED_METRICS = ("test/acc", "test/acc_per_class_mean", "test/loss")


def to_plain(cfg: Any) -> Any:
    """A resolved plain-container copy of a DictConfig without the ``hydra`` node (anything
    else is returned as is)."""
    if isinstance(cfg, DictConfig):
        plain = OmegaConf.to_container(cfg, resolve=True)
        plain.pop("hydra", None)
        return plain
    return cfg


def source_kind_for(cfg: Mapping[str, Any]) -> str:
    """The source a run really uses: ``none`` for strategies that start from scratch."""
    spec = strategy_spec(str(cfg["strategy"]["name"]))
    kind = str(cfg["source"].get("name", "none")) if spec.uses_source else "none"
    if spec.uses_source and kind == "none":
        raise ConfigError(
            f"strategy={cfg['strategy']['name']} needs pretrained weights but source=none; "
            "use strategy=scratch for random initialisation, source=random for a frozen random-"
            "encoder control, or source=pretrain|imagenet|checkpoint"
        )
    if spec.required_source and kind not in (spec.required_source, "random"):
        name = cfg["strategy"]["name"]
        raise ConfigError(
            f"strategy={name} transfers from source={spec.required_source}, but source={kind}; "
            f"drop the source override, use source=random for the random-trunk control, or "
            f"strategy=finetune source={kind}"
        )
    return kind


def make_datamodule(
    data_cfg: Mapping[str, Any],
    seed: int | None,
    source_kind: str,
    min_input_size: int,
) -> tuple[ImageClassificationDataModule, dict[str, Any]]:
    """The target data module, with inputs adapted to the backbone and its source, and its
    input spec (what a source must match to be loadable into this run's backbone)."""
    kwargs = dict(data_cfg)
    if source_kind == "imagenet":  # ImageNet weights want RGB and ImageNet statistics
        kwargs.update(channels=3, normalize="imagenet")
    datamodule = ImageClassificationDataModule(**kwargs, seed=0 if seed is None else seed)
    datamodule.setup("fit")
    height = datamodule.input_shape[1]
    if height < min_input_size:
        log.info(
            "resizing inputs from %d to %d px: the backbone needs at least %d",
            height,
            min_input_size,
            min_input_size,
        )
        kwargs["image_size"] = min_input_size
        datamodule = ImageClassificationDataModule(**kwargs, seed=0 if seed is None else seed)
        datamodule.setup("fit")
    channels, height, _ = datamodule.input_shape
    spec = {
        "channels": int(channels),
        "image_size": int(height),
        "normalize": kwargs.get("normalize", "data"),
    }
    return datamodule, spec


def _instantiate_list(group: Mapping[str, Any] | None) -> list[Any]:
    return [
        hydra.utils.instantiate(conf)
        for conf in (group or {}).values()
        if isinstance(conf, Mapping) and "_target_" in conf
    ]


def build_trainer(cfg: DictConfig, with_callbacks: bool = True, **overrides: Any) -> L.Trainer:
    """The Lightning Trainer from ``cfg.trainer`` with the configured callbacks and loggers
    (``overrides`` replace trainer arguments)."""
    if "strategy" not in overrides:  # multirun: a DDP launch that does not re-run the sweep
        overrides = {**launch_overrides(cfg.trainer), **overrides}
    callbacks = _instantiate_list(cfg.get("callbacks")) if with_callbacks else []
    if with_callbacks:  # resumed runs continue the same random streams
        callbacks.append(RNGStateCheckpoint())
    loggers = _instantiate_list(cfg.get("logger")) if with_callbacks else []
    try:
        return hydra.utils.instantiate(
            cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides
        )
    except (InstantiationException, ValueError, TypeError) as err:
        cause = err.__cause__ or err
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ConfigError(
            f"invalid trainer settings: {first[:300]} (see Lightning's Trainer arguments)"
        ) from None


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    if trainer.fast_dev_run or callback is None:
        return None
    return getattr(callback, "best_model_path", None) or None


def _metrics_from(results: list[Mapping[str, float]]) -> dict[str, float]:
    merged: dict[str, float] = {}
    for entry in results:
        merged.update({k: float(v) for k, v in entry.items()})
    return merged


def training_record(
    plain: Mapping[str, Any],
    output_dir: str | Path,
    digest: str,
    source_info: Mapping[str, Any],
    metrics: Mapping[str, Any],
    started: float,
    epochs_trained: int,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The results record of a finished training run (every strategy writes this format)."""
    return {
        "status": "completed",
        "task": "train",
        "run_hash": digest,
        "run_dir": str(output_dir),
        "identity": run_identity(plain, source_info),
        "metrics": dict(metrics),
        "epochs_trained": int(epochs_trained),
        "wall_time_s": round(time.time() - started, 2),
        "source_info": dict(source_info),
        "test_details": dict(details or {}),
        "config": plain,
    }


def _custom_runner(cfg: DictConfig) -> Any:
    spec = strategy_spec(str(cfg.strategy.name))
    if spec.runner is None:
        return None
    module_name, func_name = spec.runner.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def run_training(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Train and test one configuration; write ``results.json`` in ``output_dir``."""
    runner = _custom_runner(cfg)
    if runner is not None:  # zero-shot, adaptation, ...: their own run function
        return runner(cfg, output_dir)
    started = time.time()
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)
    plain = to_plain(cfg)
    kind = source_kind_for(plain)
    check_strategy_config(plain["strategy"])
    trainer = build_trainer(cfg)  # bad trainer settings fail before a source is built
    source_cfg = plain["source"] if kind != "none" else {"name": "none"}
    model_cfg = plain["model"]
    datamodule, spec = make_datamodule(
        plain["data"], plain.get("seed"), kind, int(model_cfg.get("min_input_size", 1))
    )
    backbone, source_info = prepare_backbone(source_cfg, model_cfg, spec)
    if cfg.get("seed") is not None:  # the same head init and data order, cache warm or cold
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    digest = run_hash(cfg)
    run_config = {"cfg": plain, "input_spec": spec, "source_info": source_info, "run_hash": digest}
    module = build_strategy(
        plain["strategy"],
        backbone,
        datamodule.num_classes,
        class_names=datamodule.class_names,
        run_config=run_config,
    )
    apply_perf(plain.get("perf"), module)
    trainer.fit(module, datamodule, ckpt_path=plain.get("ckpt_path"))
    metrics = {"val/acc_best": _best_score(trainer)}
    if is_distributed(trainer):
        leave_process_group()
    if not trainer.is_global_zero:  # DDP ranks > 0 only train; rank 0 tests and writes
        return {}
    details: dict[str, Any] = {}
    if plain.get("test", True):
        best = _best_checkpoint(trainer)
        tester = (  # after a distributed fit: test once, on one device, the whole test set
            build_trainer(cfg, with_callbacks=False, **single_device_overrides())
            if is_distributed(trainer)
            else trainer
        )
        metrics.update(_metrics_from(tester.test(module, datamodule, ckpt_path=best)))
        details = dict(module.test_details)
        metrics["best_checkpoint"] = best
    record = training_record(
        plain, output_dir, digest, source_info, metrics, started, trainer.current_epoch, details
    )
    path = write_results(output_dir, record)
    log.info("results written to %s", path)
    return record


def _best_score(trainer: L.Trainer) -> float | None:
    callback = trainer.checkpoint_callback
    score = getattr(callback, "best_model_score", None) if callback else None
    if score is None and is_distributed(trainer):  # ddp_spawn brings back the path only
        return best_score_from_checkpoint(_best_checkpoint(trainer))
    return float(score) if score is not None else None


def load_training_checkpoint(path: str | Path) -> tuple[dict, dict[str, Any]]:
    """A transferlab training checkpoint and the run config stored in it."""
    payload = read_checkpoint(path)
    hparams = payload.get("hyper_parameters") if isinstance(payload, dict) else None
    run_config = (hparams or {}).get("run_config")
    if not run_config or "state_dict" not in payload:
        raise CheckpointError(
            f"{path} is not a transferlab training checkpoint (no stored run config); "
            "use it as a source instead: source=checkpoint source.path=..."
        )
    return payload, run_config


def rebuild_module(
    payload: dict, run_config: Mapping[str, Any], num_classes: int, class_names: list[str]
) -> ClassifierModule:
    """The trained strategy module of a checkpoint, rebuilt from its config and weights."""
    cfg, spec = run_config["cfg"], run_config["input_spec"]
    backbone, _ = prepare_backbone({"name": "none"}, cfg["model"], spec)  # weights come next
    module = build_strategy(
        cfg["strategy"], backbone, num_classes, class_names=class_names, run_config=run_config
    )
    problems = state_mismatch(module.state_dict(), payload["state_dict"])
    if problems:
        raise CheckpointError(
            f"the checkpoint does not fit this set-up ({num_classes} classes, "
            f"{cfg['model']['name']}): {'; '.join(problems)}"
        )
    module.load_state_dict(payload["state_dict"])
    return module


def run_evaluation(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` on the target test split; write ``results.json``."""
    started = time.time()
    payload, run_config = load_training_checkpoint(cfg.ckpt_path)
    train_cfg = run_config["cfg"]
    data_cfg = {**train_cfg["data"], **(to_plain(cfg.get("data")) or {})}
    kind = run_config["source_info"].get("source", "none")
    datamodule, spec = make_datamodule(
        data_cfg, train_cfg.get("seed"), kind, int(run_config["input_spec"]["image_size"])
    )
    if spec["channels"] != run_config["input_spec"]["channels"]:
        raise ConfigError("the evaluation data has another channel count than the checkpoint")
    module = rebuild_module(payload, run_config, datamodule.num_classes, datamodule.class_names)
    # evaluation runs once, on one device (a DDP trainer config is not re-launched here)
    trainer = build_trainer(cfg, with_callbacks=False, **single_device_overrides())
    metrics = _metrics_from(trainer.test(module, datamodule))
    record = {
        "status": "completed",
        "task": "eval",
        "checkpoint": str(cfg.ckpt_path),
        "identity": run_identity({**train_cfg, "data": data_cfg}, run_config["source_info"]),
        "metrics": metrics,
        "wall_time_s": round(time.time() - started, 2),
        "test_details": dict(module.test_details),
        "config": {**train_cfg, "data": data_cfg},
    }
    write_results(output_dir, record)
    return record
