"""The run skeleton every task shares: :class:`RunContext` holds one run's config, seed, output
directory and run hash, builds its trainers, fits and tests a module, and writes the one
results record (``finish``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.errors import InstantiationException
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import Callback, ModelSummary, ProgressBar
from omegaconf import DictConfig, OmegaConf

from transferlab.core.checkpoint import SAFE_LOAD
from transferlab.core.console import is_quiet
from transferlab.core.errors import ConfigError
from transferlab.core.registry import Registry
from transferlab.core.results import (
    DEBUG_STATUS,
    UNSEEDED_NOTE,
    UNTRAINED_STATUS,
    is_debug_trainer,
    run_hash,
    run_identity,
    write_results,
)
from transferlab.core.schema import ModelOptions, PerfOptions, TrainerOptions, check_model
from transferlab.modules.callbacks import (
    DivergenceGuard,
    RNGStateCheckpoint,
    ValidateAtMaxSteps,
)
from transferlab.modules.perf import emulated_bf16_warning
from transferlab.tasks.checkpoints import (
    AtomicCheckpointIO,
    RunRecordCheckpoint,
    has_checkpoint_io,
)
from transferlab.tasks.distributed import (
    best_score_from_checkpoint,
    is_distributed,
    launch_overrides,
    leave_process_group,
    single_device_overrides,
)
from transferlab.tasks.trackers import build_loggers, publish_run

log = logging.getLogger(__name__)


def to_plain(cfg: Any) -> Any:
    """A resolved plain-container copy of a DictConfig without the ``hydra`` node (anything
    else is returned as is)."""
    if isinstance(cfg, DictConfig):
        plain = OmegaConf.to_container(cfg, resolve=True)
        plain.pop("hydra", None)
        return plain
    return cfg


def _instantiate_list(group: Mapping[str, Any] | None) -> list[Any]:
    return [
        hydra.utils.instantiate(conf)
        for conf in (group or {}).values()
        if isinstance(conf, Mapping) and "_target_" in conf
    ]


def build_trainer(
    cfg: DictConfig,
    with_callbacks: bool = True,
    callbacks: Sequence[Callback] | None = None,
    **overrides: Any,
) -> L.Trainer:
    """The Lightning Trainer from ``cfg.trainer`` with the configured callbacks (or
    ``callbacks``), loggers, the divergence guard, the random-state checkpoint and the
    validation at ``max_steps`` (``overrides`` replace trainer arguments).
    ``with_callbacks=False``: a bare trainer for testing. Every trainer writes its checkpoints
    atomically (:class:`AtomicCheckpointIO`)."""
    if "strategy" not in overrides:  # multirun: a DDP launch that does not re-run the sweep
        overrides = {**launch_overrides(cfg.trainer), **overrides}
    overrides = {**overrides, "plugins": _with_atomic_io(cfg, overrides.get("plugins"))}
    chosen: list[Any] = []
    loggers: list[Any] = []
    if with_callbacks:
        configured = _instantiate_list(cfg.get("callbacks"))
        chosen = list(callbacks) if callbacks is not None else configured
        # resumed runs continue the same random streams; a NaN loss stops the run; a fit that
        # max_steps ends inside an epoch is validated at its last step
        chosen += [RNGStateCheckpoint(), DivergenceGuard(), ValidateAtMaxSteps()]
        loggers = build_loggers(cfg.get("logger"))
    if is_quiet():  # a multirun job: no progress bar or model summary on the console
        overrides = {"enable_progress_bar": False, **overrides}
        chosen = [c for c in chosen if not isinstance(c, ModelSummary)]
        overrides.setdefault("enable_model_summary", False)
    if not overrides.get("enable_progress_bar", cfg.trainer.get("enable_progress_bar", True)):
        chosen = [c for c in chosen if not isinstance(c, ProgressBar)]  # Lightning refuses both
    try:
        trainer = hydra.utils.instantiate(
            cfg.trainer, callbacks=chosen, logger=loggers or False, **overrides
        )
    except (InstantiationException, ValueError, TypeError) as err:
        cause = err.__cause__ or err
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ConfigError(
            f"invalid trainer settings: {first[:300]} (see Lightning's Trainer arguments)"
        ) from None
    on_cpu = isinstance(trainer.accelerator, CPUAccelerator)
    if warning := emulated_bf16_warning(str(trainer.precision), on_cpu):
        log.warning(warning)
    return trainer


def _with_atomic_io(cfg: DictConfig, plugins: Any) -> list[Any]:
    """The trainer's plugins (``plugins`` given, else ``cfg.trainer.plugins``) plus the atomic
    checkpoint writer, unless one of them already writes checkpoints."""
    if plugins is None and cfg.trainer.get("plugins") is not None:
        plugins = hydra.utils.instantiate(cfg.trainer.plugins)
    items = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    items = [p for p in items if p is not None]
    return items if has_checkpoint_io(items) else [*items, AtomicCheckpointIO()]


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The best-on-validation checkpoint of a fit (None after ``fast_dev_run`` or without
    checkpointing)."""
    callback = trainer.checkpoint_callback
    if trainer.fast_dev_run or callback is None:
        return None
    return getattr(callback, "best_model_path", None) or None


def best_score(trainer: L.Trainer) -> float | None:
    """The monitored best validation score of a fit."""
    callback = trainer.checkpoint_callback
    score = getattr(callback, "best_model_score", None) if callback else None
    if score is None and is_distributed(trainer):  # ddp_spawn brings back the path only
        return best_score_from_checkpoint(best_checkpoint(trainer))
    return float(score) if score is not None else None


def merged_metrics(results: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """One dict of the metrics Lightning's ``test`` returns (one mapping per data loader)."""
    merged: dict[str, float] = {}
    for entry in results:
        merged.update({k: float(v) for k, v in entry.items()})
    return merged


class RunContext:
    """One run: its config (``cfg`` and the resolved ``plain`` copy), seed, output directory
    and run hash. Tasks build trainers through it (so every checkpoint carries the run's
    record) and end with :meth:`finish`, which writes ``results.json``."""

    def __init__(self, cfg: DictConfig, output_dir: str | Path) -> None:
        self.cfg = cfg
        self.output_dir = Path(output_dir)
        self.started = time.time()
        self.plain: dict[str, Any] = to_plain(cfg)
        check_model(ModelOptions, "model", self.plain["model"])
        check_model(PerfOptions, "perf", self.plain.get("perf") or {})
        check_model(TrainerOptions, "trainer", self.plain.get("trainer") or {})
        self.run_hash = run_hash(cfg)
        # what every checkpoint of this run stores; tasks add input_spec and source_info
        self.record: dict[str, Any] = {"cfg": self.plain, "run_hash": self.run_hash}
        # optimizer steps the fit ended at (None: no fit through this context)
        self.optimizer_steps: int | None = None
        # the experiment trackers of the training trainer, handed the record by ``finish``
        self.loggers: list[Any] = []
        # trainable_params, total_params, trainable_fraction of the fitted module (if it counts)
        self.parameter_counts: dict[str, Any] = {}

    @property
    def seed(self) -> int | None:
        seed = self.plain.get("seed")
        return None if seed is None else int(seed)

    @property
    def split_seed(self) -> int:
        """The seed of data splits and sources: the run seed, or 0 without one."""
        return 0 if self.seed is None else self.seed

    @property
    def cache_dir(self) -> Path:
        """Where built sources are cached."""
        return Path(self.plain["paths"]["cache_dir"]) / "sources"

    @property
    def resume_from(self) -> str | None:
        """The checkpoint to continue from (``ckpt_path``), if any."""
        return self.plain.get("ckpt_path")

    def seed_everything(self, verbose: bool = True) -> None:
        """Seed torch, numpy and Python (and data-loader workers) with the run seed, if any."""
        if self.seed is not None:
            L.seed_everything(self.seed, workers=True, verbose=verbose)

    def trainer(
        self,
        with_callbacks: bool = True,
        callbacks: Sequence[Callback] | None = None,
        **overrides: Any,
    ) -> L.Trainer:
        """A trainer for this run; its checkpoints carry the run's record. A training trainer
        (``with_callbacks``) that would never train (``max_epochs=0``, ``max_steps=0``) is a
        config error: its run would record an untrained model as a result."""
        if with_callbacks:
            settings = {**(self.plain.get("trainer") or {}), **overrides}
            for key in ("max_epochs", "max_steps"):
                if settings.get(key) == 0 and not isinstance(settings.get(key), bool):
                    raise ConfigError(
                        f"trainer.{key}=0 trains nothing: the run would test an untrained "
                        f"model and record it as a result; use trainer.{key} >= 1 (or "
                        "eval.py ckpt_path=... to test a trained checkpoint)"
                    )
        extra = [RunRecordCheckpoint(self.record)] if with_callbacks else []
        if with_callbacks and callbacks is None:
            callbacks = [*_instantiate_list(self.cfg.get("callbacks")), *extra]
        elif with_callbacks:
            callbacks = [*callbacks, *extra]
        trainer = build_trainer(self.cfg, with_callbacks, callbacks, **overrides)
        if with_callbacks:
            self.loggers = list(trainer.loggers)
        return trainer

    def fit(self, trainer: L.Trainer, module: L.LightningModule, **data: Any) -> dict[str, Any]:
        """Fit ``module`` (continuing from ``ckpt_path`` if given); ``{"val/acc_best": ...}``."""
        trainer.fit(module, ckpt_path=self.resume_from, **data, **SAFE_LOAD)
        if not is_distributed(trainer):  # ddp_spawn does not bring the step count back
            self.optimizer_steps = int(trainer.global_step)
        counts = getattr(module, "parameter_counts", None)
        self.parameter_counts = dict(counts()) if callable(counts) else {}
        return {"val/acc_best": best_score(trainer)}

    def test(
        self,
        trainer: L.Trainer,
        module: L.LightningModule,
        data: Any,
        checkpoint: str | None,
    ) -> dict[str, Any]:
        """Test ``module`` at ``checkpoint`` (None: as it is) on ``data`` (a data module or a
        loader): the merged test metrics and the checkpoint used."""
        kwargs = {"datamodule": data} if isinstance(data, L.LightningDataModule) else {}
        loaders = None if kwargs else data
        # the command prints its own table of the test metrics (cli), Lightning's would repeat it
        results = trainer.test(
            module, loaders, ckpt_path=checkpoint, verbose=False, **kwargs, **SAFE_LOAD
        )
        return {**merged_metrics(results), "best_checkpoint": checkpoint}

    def fit_and_test(
        self,
        trainer: L.Trainer,
        module: L.LightningModule,
        test_data: Any,
        select_best: bool = True,
        before_test: Callable[[str | None], Any] | None = None,
        **fit_data: Any,
    ) -> dict[str, Any] | None:
        """Fit, then test the best-on-validation checkpoint (``select_best``) or the last
        weights once, on one device of rank 0 (None in the other ranks of a DDP run).
        ``before_test(best_checkpoint)`` may put other weights into ``module`` (WiSE-FT):
        those are tested as they are."""
        metrics = self.fit(trainer, module, **fit_data)
        if is_distributed(trainer):
            leave_process_group()
        if not trainer.is_global_zero:  # DDP ranks > 0 only train; rank 0 tests and writes
            return None
        if not self.plain.get("test", True):
            return metrics
        tester = (  # after a distributed fit: test once, on one device, the whole test set
            self.trainer(with_callbacks=False, **single_device_overrides())
            if is_distributed(trainer)
            else trainer
        )
        best = best_checkpoint(trainer) if select_best else None
        if before_test is not None:
            before_test(best)
            return {**metrics, **self.test(tester, module, test_data, None)}
        return {**metrics, **self.test(tester, module, test_data, best)}

    def status(self) -> str:
        """``debug`` for runs on a fraction of the data (``fast_dev_run``, ``limit_*_batches``:
        see :func:`is_debug_trainer`); ``untrained`` when the fit took no optimizer step (the
        report leaves it out, ``resume=true`` runs it again); else ``completed``."""
        if is_debug_trainer(self.plain.get("trainer") or {}):
            return DEBUG_STATUS
        return UNTRAINED_STATUS if self.optimizer_steps == 0 else "completed"

    def notes(self) -> list[str]:
        """What a reader of the record must know: an unseeded run, an untrained model."""
        notes = [UNSEEDED_NOTE] if self.seed is None else []
        if self.optimizer_steps == 0:
            notes.append("the fit took no optimizer step: the model tested is untrained")
        return notes

    def finish(
        self,
        source_info: Mapping[str, Any],
        metrics: Mapping[str, Any],
        epochs_trained: int,
        details: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write this run's ``results.json`` (every task writes this format, ``extra`` adds a
        task's own top-level keys); the record."""
        record = {
            "status": self.status(),
            "task": "train",
            "run_hash": self.run_hash,
            "run_dir": str(self.output_dir),
            "identity": run_identity(self.plain, source_info),
            "metrics": dict(metrics),
            "epochs_trained": int(epochs_trained),
            **self.parameter_counts,
            "wall_time_s": round(time.time() - self.started, 2),
            "source_info": dict(source_info),
            "test_details": dict(details or {}),
            "config": self.plain,
            **dict(extra or {}),
        }
        if self.notes():
            record["notes"] = self.notes()
        path = write_results(self.output_dir, record)
        log.info("results written to %s", path)
        publish_run(self.loggers, record, path)
        return record


Task = Callable[[RunContext], dict[str, Any]]
TASKS: Registry[Task] = Registry("task")


def register_task(name: str) -> Callable[[Task], Task]:
    """Function decorator: register ``run(ctx) -> results record`` as task ``name``."""
    return TASKS.register(name)
