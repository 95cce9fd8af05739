"""Our stack, piece by piece as the ``classify`` task assembles it: composed config, data
module, backbone, strategy, and the Trainer with the configured callbacks and logger."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from transferlab.bench.timing import BatchTimer
from transferlab.core.config import config_dir, register_resolvers
from transferlab.core.specs import InputRequirement
from transferlab.data import ImageClassificationDataModule
from transferlab.data.target import target_datamodule
from transferlab.modules import ClassifierModule, build_strategy
from transferlab.modules.perf import apply_perf, wants_channels_last
from transferlab.sources import make_source
from transferlab.tasks.context import build_trainer, to_plain


def compose_train_config(overrides: Sequence[str], work_dir: str | Path) -> DictConfig:
    """``conf/train.yaml`` composed as ``python train.py OVERRIDES`` would, writing under
    ``work_dir``."""
    register_resolvers()
    GlobalHydra.instance().clear()
    work = Path(work_dir)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.output_dir={work}",
                f"paths.log_dir={work}/logs",
                f"paths.cache_dir={work}/cache",
                *overrides,
            ],
        )
    GlobalHydra.instance().clear()
    return cfg


def workload_overrides(
    model: str,
    batch_size: int,
    eval_batch_size: int,
    labels_per_class: int | None,
    dataset: str = "fashion_mnist",
) -> list[str]:
    """Scratch training of ``model`` on ``dataset`` (all classes, its default augmentation)
    at ``batch_size``."""
    budget = "null" if labels_per_class is None else str(labels_per_class)
    return [
        f"data={dataset}",
        f"model={model}",
        "strategy=scratch",
        "data.classes=null",
        f"data.labels_per_class={budget}",
        f"data.batch_size={batch_size}",
        f"data.eval_batch_size={eval_batch_size}",
        "print_config=false",
    ]


class Workload:
    """One model on one data module: fresh identically-initialised modules on demand."""

    def __init__(self, cfg: DictConfig, share_data_of: Workload | None = None) -> None:
        self.cfg = cfg
        self.plain = to_plain(cfg)
        self.runs = 0
        if share_data_of is not None:  # the same data module (e.g. for a perf variant)
            self.datamodule, self.spec = share_data_of.datamodule, share_data_of.spec
            return
        model_cfg = self.plain["model"]
        self.datamodule, self.spec = target_datamodule(
            self.plain["data"],
            self.plain.get("seed"),
            InputRequirement(min_size=int(model_cfg["min_input_size"])),
        )

    @property
    def dm(self) -> ImageClassificationDataModule:
        return self.datamodule

    def fresh_module(self, seed: int = 0) -> ClassifierModule:
        """The strategy module, initialised from ``seed`` (the same weights every call)."""
        L.seed_everything(seed, verbose=False)
        backbone = make_source({"name": "none"}).build(self.plain["model"], self.spec)
        module = build_strategy(
            self.plain["strategy"],
            backbone,
            self.datamodule.num_classes,
            class_names=self.datamodule.class_names,
            input_shape=self.spec.shape,
        )
        apply_perf(self.plain.get("perf"), module)
        return module

    def memory_format(self) -> str:
        """``channels_last`` or ``nchw``: what this workload's ``perf`` settings give its model."""
        module = self.fresh_module()
        return (
            "channels_last"
            if wants_channels_last(self.plain.get("perf", {}).get("channels_last"), module)
            else "nchw"
        )

    def trainer(self, precision: str, train_batches: int, test_batches: int) -> L.Trainer:
        """The configured Trainer (callbacks, logger, progress bar) for a short epoch, plus a
        :class:`BatchTimer` (``trainer.bench_timer``)."""
        cfg = self.cfg.copy()
        self.runs += 1
        with open_dict(cfg):  # each run its own folder (checkpoints, CSV logs)
            cfg.paths.output_dir = str(Path(self.cfg.paths.output_dir) / f"run{self.runs:03d}")
            cfg.trainer.precision = precision
            cfg.trainer.max_epochs = 1
            cfg.trainer.min_epochs = 1
            cfg.trainer.limit_train_batches = train_batches
            cfg.trainer.limit_val_batches = 0
            cfg.trainer.limit_test_batches = test_batches
        trainer = build_trainer(cfg)
        timer = BatchTimer()
        trainer.callbacks.append(timer)
        trainer.bench_timer = timer  # type: ignore[attr-defined]
        return trainer


def stack_train(
    work: Workload, precision: str, warmup: int, steps: int, seed: int = 0
) -> tuple[dict[str, Any], L.Trainer, ClassifierModule]:
    """Train ``warmup + steps`` batches through ``Trainer.fit``; time the last ``steps``."""
    module = work.fresh_module(seed)
    trainer = work.trainer(precision, warmup + steps, 1)
    timer: BatchTimer = trainer.bench_timer  # type: ignore[attr-defined]
    timer.warmup = warmup
    L.seed_everything(seed, verbose=False)
    with warnings.catch_warnings():  # no validation here, so nothing to monitor
        warnings.filterwarnings("ignore", message=r".*could not find the monitored key")
        trainer.fit(module, work.datamodule)
    result = {
        "images_per_s": timer.images_per_s,
        "cpu_ms_per_image": timer.cpu_ms_per_image,
        "seconds": timer.seconds,
        "fit_s": timer.fit_s,
        "overhead_s": (timer.fit_s or 0.0) - timer.seconds * (warmup + steps) / steps,
    }
    return result, trainer, module


def stack_infer(
    work: Workload, module: ClassifierModule, precision: str, warmup: int, batches: int
) -> dict[str, float]:
    """Predict ``warmup + batches`` test batches through ``Trainer.test``; time the last ones."""
    trainer = work.trainer(precision, 1, warmup + batches)
    timer: BatchTimer = trainer.bench_timer  # type: ignore[attr-defined]
    timer.warmup = warmup
    trainer.test(module, work.datamodule, verbose=False)
    return {"images_per_s": timer.images_per_s, "seconds": timer.seconds}
