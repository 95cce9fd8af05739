"""The ``evaluate`` task (``eval.py ckpt_path=...``): rebuild a trained module from its
checkpoint and test it on the target test split (the training run's, or the ``data`` given)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from transferlab.core.checkpoint import state_mismatch
from transferlab.core.errors import CheckpointError, ConfigError
from transferlab.core.results import run_identity, write_results
from transferlab.core.specs import InputRequirement, InputSpec
from transferlab.data import ImageClassificationDataModule
from transferlab.data.target import target_datamodule
from transferlab.modules import ClassifierModule, build_strategy, strategy_spec
from transferlab.sources import SOURCES, make_source
from transferlab.tasks.checkpoints import load_training_checkpoint
from transferlab.tasks.context import build_trainer, merged_metrics, to_plain
from transferlab.tasks.distributed import single_device_overrides

TRAINING_ONLY = ("regularizer", "wise_alpha")


def rebuild_module(
    payload: Mapping[str, Any],
    run_record: Mapping[str, Any],
    num_classes: int,
    class_names: list[str],
    partial: bool = False,
) -> ClassifierModule:
    """The trained strategy module of a checkpoint, rebuilt from its record and weights;
    ``partial``: the weights are an export's (``backbone.*`` and ``head.*`` only), the rest of
    the module (training-only state) keeps its initial values."""
    cfg, spec = run_record["cfg"], InputSpec.of(run_record["input_spec"])
    backbone = make_source({"name": "none"}).build(cfg["model"], spec)  # weights come next
    # options that act only while training (a Co-Tuning source head, WiSE-FT's source copy)
    strategy = {**cfg["strategy"], **{k: None for k in TRAINING_ONLY if k in cfg["strategy"]}}
    module = build_strategy(
        strategy, backbone, num_classes, class_names=class_names, input_shape=spec.shape
    )
    state = dict(payload["state_dict"])
    if partial:
        own = module.state_dict()
        state |= {k: v for k, v in own.items() if not k.startswith(("backbone.", "head."))}
    problems = state_mismatch(module.state_dict(), state)
    if problems:
        raise CheckpointError(
            f"the checkpoint does not fit this set-up ({num_classes} classes, "
            f"{cfg['model']['name']}): {'; '.join(problems)}"
        )
    module.load_state_dict(state)
    return module


def check_classifier_checkpoint(path: Any, train_cfg: Mapping[str, Any]) -> None:
    """Refuse, in one line saying what to use instead, a checkpoint of a strategy with its own
    task (``transfer_gan``, ``adapt``, ...): ``eval.py`` rebuilds classifier modules only."""
    name = str((train_cfg.get("strategy") or {}).get("name"))
    spec = strategy_spec(name)
    if spec.module is not None:
        return
    scores = " (FID/KID: test/fid, test/kid_mean)" if spec.task == "transfer_gan" else ""
    raise ConfigError(
        f"eval.py evaluates classifier checkpoints, but {path} is a strategy={name} "
        f"checkpoint: its test metrics{scores} are in its run's results.json; rerun train.py "
        "with that run's settings to measure again"
    )


def checkpoint_datamodule(
    record: Mapping[str, Any], data_cfg: Mapping[str, Any]
) -> ImageClassificationDataModule:
    """The data module ``data_cfg`` gives with the inputs a checkpoint's run was fed (its
    source's requirement, its input size; split seed: the run's seed)."""
    stored = InputSpec.of(record["input_spec"])
    kind = record["source_info"].get("source", "none")
    base = SOURCES.get(kind).requirement if kind in SOURCES else InputRequirement()
    datamodule, spec = target_datamodule(
        data_cfg, record["cfg"].get("seed"), base.with_min_size(stored.image_size)
    )
    if spec.channels != stored.channels:
        raise ConfigError("the evaluation data has another channel count than the checkpoint")
    return datamodule


def run_evaluation(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` on the target test split; write ``results.json``."""
    started = time.time()
    payload, record = load_training_checkpoint(cfg.ckpt_path)
    train_cfg = record["cfg"]
    check_classifier_checkpoint(cfg.ckpt_path, train_cfg)
    data_cfg = {**train_cfg["data"], **(to_plain(cfg.get("data")) or {})}
    datamodule = checkpoint_datamodule(record, data_cfg)
    module = rebuild_module(payload, record, datamodule.num_classes, datamodule.class_names)
    # evaluation runs once, on one device (a DDP trainer config is not re-launched here)
    trainer = build_trainer(cfg, with_callbacks=False, **single_device_overrides())
    metrics = merged_metrics(trainer.test(module, datamodule, verbose=False))
    result = {
        "status": "completed",
        "task": "eval",
        "checkpoint": str(cfg.ckpt_path),
        "identity": run_identity({**train_cfg, "data": data_cfg}, record["source_info"]),
        "metrics": metrics,
        "wall_time_s": round(time.time() - started, 2),
        "test_details": dict(module.test_details),
        "config": {**train_cfg, "data": data_cfg},
    }
    write_results(output_dir, result)
    return result
