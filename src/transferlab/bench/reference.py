"""The hand-written PyTorch loop our stack is compared with: the same model, data, batch size,
optimizer, schedule, augmentation and accuracy metric, and nothing else."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from transferlab.modules.optim import build_optimizer, build_scheduler


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """CPU autocast for Lightning's ``bf16-mixed``; nothing for ``32-true``."""
    if precision == "bf16-mixed":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def plain_train(
    model: nn.Module,
    param_groups: list[dict],
    optimizer_cfg: dict,
    scheduler_cfg: dict,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    warmup: int,
    steps: int,
    num_classes: int,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    precision: str = "32-true",
    epoch_steps: int | None = None,
) -> dict[str, float]:
    """Train ``warmup + steps`` steps on shuffled in-memory batches; time the last ``steps``.

    The schedule is built for ``epoch_steps`` (one epoch by default), as the stack does.
    Returns images/s, the mean training loss and accuracy of the timed steps.
    """
    model.train()
    optimizer = build_optimizer(param_groups, optimizer_cfg)
    total = epoch_steps or max(1, len(labels) // batch_size)
    scheduler = build_scheduler(optimizer, scheduler_cfg, total, total)
    accuracy = MulticlassAccuracy(num_classes, average="micro")
    order = torch.randperm(len(labels))
    loss_sum = torch.zeros(())
    start = cpu = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            start, cpu = time.perf_counter(), time.process_time()
            accuracy.reset()
            loss_sum.zero_()
        index = order[(step * batch_size) % len(order) :][:batch_size]
        x, y = images[index], labels[index]
        if augment is not None:
            x = augment(x)
        with autocast(precision):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach()
        accuracy.update(logits.detach(), y)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "images_per_s": steps * batch_size / seconds,
        "cpu_ms_per_image": 1000 * cpu / (steps * batch_size),
        "seconds": seconds,
        "loss": float(loss_sum) / max(1, steps),
        "acc": float(accuracy.compute()),
    }


@torch.inference_mode()
def plain_infer(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    warmup: int,
    batches: int,
    num_classes: int,
    precision: str = "32-true",
) -> dict[str, float]:
    """Predict ``warmup + batches`` test batches in eval mode; time the last ``batches``."""
    model.eval()
    accuracy = MulticlassAccuracy(num_classes, average="micro")
    start, images_timed = 0.0, 0
    for step in range(warmup + batches):
        if step == warmup:
            start, images_timed = time.perf_counter(), 0
        x = images[step * batch_size : (step + 1) * batch_size]
        y = labels[step * batch_size : (step + 1) * batch_size]
        with autocast(precision):
            logits = model(x)
        accuracy.update(logits, y)
        images_timed += len(y)
    seconds = time.perf_counter() - start
    return {"images_per_s": images_timed / seconds, "seconds": seconds}
