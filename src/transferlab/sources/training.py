"""What every source build shares: a quiet one-device Trainer and the data module of its
images, preprocessed like the target's."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from transferlab.core.checkpoint import SAFE_LOAD
from transferlab.data import ImageClassificationDataModule
from transferlab.modules.callbacks import DivergenceGuard

SOURCE_LR_HINT = "lower the learning rate (source.optimizer.lr)"


def quiet_trainer(
    accelerator: str = "cpu",
    callbacks: Sequence[Callback] = (),
    guard: DivergenceGuard | None = None,
    **kwargs: Any,
) -> L.Trainer:
    """A Trainer on one device without logger, progress bar, model summary or sanity check,
    stopped by ``guard`` (default: a source-training :class:`DivergenceGuard`) at the first
    non-finite loss."""
    guard = guard or DivergenceGuard("source training", hint=SOURCE_LR_HINT)
    return L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        callbacks=[guard, *callbacks],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def source_trainer(
    cfg: Mapping[str, Any],
    callbacks: Sequence[Callback] = (),
    guard: DivergenceGuard | None = None,
    **kwargs: Any,
) -> L.Trainer:
    """A quiet Trainer for ``cfg``'s ``max_epochs``, ``limit_train_batches`` and
    ``accelerator`` (a source config's training keys); ``limit_eval_batches`` (set by
    ``debug=fast_dev_run`` only) caps the source's validation and test batches too."""
    limit_eval = cfg.get("limit_eval_batches")
    limits = {} if limit_eval is None else {"limit_val_batches": limit_eval}
    limits |= {} if limit_eval is None else {"limit_test_batches": limit_eval}
    return quiet_trainer(
        accelerator=cfg.get("accelerator", "cpu"),
        callbacks=callbacks,
        guard=guard,
        max_epochs=int(cfg.get("max_epochs", 10)),
        limit_train_batches=cfg.get("limit_train_batches") or 1.0,
        **{**limits, **kwargs},
    )


def source_datamodule(
    data_kwargs: Mapping[str, Any],
    input_spec: Mapping[str, Any],
    seed: int,
    key: str = "source.classes",
) -> ImageClassificationDataModule:
    """The data module of a source's images (``data_kwargs``: data set, classes, budget, ...),
    at the target's image size, channels and normalisation, set up for fitting. ``key`` is the
    config key of its classes, named in errors."""
    datamodule = ImageClassificationDataModule(
        **data_kwargs,
        image_size=input_spec["image_size"],
        channels=input_spec["channels"],
        normalize=input_spec["normalize"],
        seed=seed,
    )
    datamodule.classes_key = key
    datamodule.setup("fit")
    return datamodule


def fit_best_and_test(
    module: L.LightningModule,
    make_trainer: Callable[[Sequence[Callback]], L.Trainer],
    fit_data: Sequence[Any],
    test_data: Any,
) -> dict[str, Any]:
    """Fit a classifier source keeping its best-on-validation epoch (checkpoints in a
    temporary directory), load that epoch and test it. ``make_trainer(callbacks)`` builds the
    trainer; ``fit_data`` are ``Trainer.fit``'s data arguments. Returns ``best_val_acc``,
    ``source_test_acc`` and ``epochs``."""
    with tempfile.TemporaryDirectory(prefix="tl-source-") as tmp:
        checkpoint = ModelCheckpoint(dirpath=tmp, monitor="val/acc", mode="max")
        trainer = make_trainer([checkpoint])
        trainer.fit(module, *fit_data)
        best = checkpoint.best_model_path or None
        metrics = trainer.test(module, test_data, ckpt_path=best, verbose=False, **SAFE_LOAD)[0]
    return {
        "best_val_acc": float(checkpoint.best_model_score or float("nan")),
        "source_test_acc": float(metrics["test/acc"]),
        "epochs": int(trainer.current_epoch),
    }
