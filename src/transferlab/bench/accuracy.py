"""Time to accuracy: a callback that evaluates test accuracy during training with the
evaluation time taken off the clock, and the runs of a recipe that use it."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import psutil
import torch


class TimeToAccuracy(L.Callback):
    """Every ``every_n_steps`` optimizer steps and at each epoch end, measure test accuracy;
    record the training time (evaluations excluded) at which each target is first reached.

    Test accuracy is only *observed* here (never used to choose anything), as in DAWNBench.
    Each target's time is also recorded from the start of the process (interpreter start-up,
    imports, config, data and Trainer set-up included; evaluations still off the clock), which
    is what a user of a fresh ``python train.py`` waits for. ``out`` (optional) receives the
    record as JSON when training ends.
    """

    def __init__(
        self,
        targets: Sequence[float] = (0.90, 0.92),
        every_n_steps: int = 50,
        out: str | None = None,
    ) -> None:
        self.targets = sorted(float(t) for t in targets)
        self.every_n_steps = max(1, int(every_n_steps))
        self.out = out
        self.curve: list[dict[str, float]] = []
        self.reached: dict[str, float | None] = {f"{t:.2f}": None for t in self.targets}
        self.reached_from_start: dict[str, float | None] = dict(self.reached)
        self._start = 0.0
        self._paused = 0.0
        self._process_start = psutil.Process().create_time()

    def elapsed(self) -> float:
        """Training seconds since training started, evaluations excluded."""
        return time.perf_counter() - self._start - self._paused

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._paused = time.perf_counter(), 0.0

    @torch.inference_mode()
    def _test_accuracy(self, trainer: L.Trainer, pl_module: L.LightningModule) -> float:
        was_training = pl_module.training
        pl_module.eval()
        correct = total = 0
        with trainer.precision_plugin.forward_context():
            for images, labels in trainer.datamodule.test_dataloader():
                images, labels = images.to(pl_module.device), labels.to(pl_module.device)
                images = trainer.datamodule.prepare_batch(images)
                correct += int((pl_module(images).argmax(1) == labels).sum())
                total += len(labels)
        pl_module.train(was_training)
        return correct / max(1, total)

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        clock = self.elapsed()
        paused_at = time.perf_counter()
        acc = self._test_accuracy(trainer, pl_module)
        self.curve.append({"step": trainer.global_step, "train_s": clock, "test_acc": acc})
        since_process_start = time.time() - self._process_start - self._paused
        for target in self.targets:
            key = f"{target:.2f}"
            if self.reached[key] is None and acc >= target:
                self.reached[key] = clock
                self.reached_from_start[key] = since_process_start
        self._paused += time.perf_counter() - paused_at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step % self.every_n_steps == 0:
            self._evaluate(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.curve or self.curve[-1]["step"] != trainer.global_step:
            self._evaluate(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.out:
            Path(self.out).write_text(json.dumps(self.record(), indent=2))

    def record(self) -> dict[str, Any]:
        """Targets reached (training seconds, null if never), the curve and the final time."""
        return {
            "reached_s": dict(self.reached),
            "reached_from_process_start_s": dict(self.reached_from_start),
            "train_s": self.elapsed(),
            "evaluation_s": self._paused,
            "best_test_acc": max((p["test_acc"] for p in self.curve), default=None),
            "curve": list(self.curve),
        }


def callback_overrides(targets: Sequence[float], every_n_steps: int, out: Path) -> list[str]:
    """Hydra overrides adding :class:`TimeToAccuracy` to a run's callbacks."""
    prefix = "+callbacks.time_to_accuracy"
    return [
        f"{prefix}._target_={TimeToAccuracy.__module__}.{TimeToAccuracy.__name__}",
        f"{prefix}.targets=[{','.join(str(t) for t in targets)}]",
        f"{prefix}.every_n_steps={every_n_steps}",
        f"{prefix}.out={out}",
    ]
