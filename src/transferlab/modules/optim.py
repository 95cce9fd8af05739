"""Optimizers and learning-rate schedules built from plain config dicts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.optim import lr_scheduler as sched
from torch.optim.lr_scheduler import LRScheduler

from transferlab.core.errors import ConfigError

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULERS = ("none", "cosine", "onecycle", "step")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_optim_config(
    optimizer: Mapping[str, Any] | None, scheduler: Mapping[str, Any] | None
) -> None:
    """Refuse, up front, unknown optimizer/scheduler names, a learning rate that is not a
    finite number > 0 (``inf`` or ``nan`` would train nothing but NaNs), and a weight decay or
    momentum that is not a finite number >= 0."""
    optimizer = optimizer or {}
    name = str(optimizer.get("name", "adamw")).lower()
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer '{name}'; valid: {', '.join(OPTIMIZERS)}")
    lr = optimizer.get("lr", 1e-3)
    if not _number(lr) or not math.isfinite(lr) or not lr > 0:
        raise ConfigError(f"optimizer.lr={lr!r} is invalid; use a finite number > 0")
    for key in ("weight_decay", "momentum"):
        value = optimizer.get(key)
        if value is not None and (not _number(value) or not math.isfinite(value) or value < 0):
            raise ConfigError(f"optimizer.{key}={value!r} is invalid; use a finite number >= 0")
    sched_name = str((scheduler or {}).get("name", "none")).lower()
    if sched_name not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler '{sched_name}'; valid: {', '.join(SCHEDULERS)}")


def build_optimizer(param_groups: Iterable[dict], cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Make the optimizer named by ``cfg['name']`` over ``param_groups``.

    Each group may carry ``lr_scale``; its learning rate becomes ``cfg['lr'] * lr_scale``.
    """
    check_optim_config(cfg, None)  # every optimizer built, the sources' included
    name = str(cfg.get("name", "adamw")).lower()
    lr = float(cfg.get("lr", 1e-3))
    weight_decay = float(cfg.get("weight_decay", 0.0))
    groups = []
    for group in param_groups:
        group = dict(group)
        group["lr"] = lr * float(group.pop("lr_scale", 1.0))
        groups.append(group)
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if name == "sgd":
        kwargs["momentum"] = float(cfg.get("momentum", 0.9))
        kwargs["nesterov"] = bool(cfg.get("nesterov", False)) and kwargs["momentum"] > 0
    elif "betas" in cfg and cfg["betas"] is not None:
        kwargs["betas"] = tuple(cfg["betas"])
    return OPTIMIZERS[name](groups, **kwargs)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: Mapping[str, Any] | None,
    total_steps: int,
    steps_per_epoch: int,
) -> LRScheduler | None:
    """A per-step torch scheduler for ``cfg`` (``None`` for a constant rate).

    ``name``: none | cosine | onecycle | step; ``warmup_epochs`` adds a linear warmup
    (cosine, step, none); ``step_epochs``/``gamma`` for step; ``pct_start`` for onecycle.
    """
    cfg = dict(cfg or {})
    name = str(cfg.get("name", "none")).lower()
    if name not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler '{name}'; valid: {', '.join(SCHEDULERS)}")
    total = max(1, int(total_steps))
    per_epoch = max(1, int(steps_per_epoch))
    warmup = min(total - 1, int(round(float(cfg.get("warmup_epochs", 0) or 0) * per_epoch)))
    if name == "onecycle":
        max_lrs = [group["lr"] for group in optimizer.param_groups]
        return sched.OneCycleLR(
            optimizer,
            max_lr=max_lrs,
            total_steps=total,
            pct_start=float(cfg.get("pct_start", 0.3)),
        )
    if name == "cosine":
        main: LRScheduler | None = sched.CosineAnnealingLR(
            optimizer,
            T_max=max(1, total - warmup),
            eta_min=float(cfg.get("min_lr", 0.0)),
        )
    elif name == "step":
        main = sched.StepLR(
            optimizer,
            step_size=max(1, int(cfg.get("step_epochs", 30)) * per_epoch),
            gamma=float(cfg.get("gamma", 0.1)),
        )
    else:
        main = None
    if warmup <= 0:
        return main
    ramp = sched.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup)
    if main is None:
        return ramp
    return sched.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def optimizer_config(
    trainer: Any,
    param_groups: Iterable[dict],
    optimizer_cfg: Mapping[str, Any],
    scheduler_cfg: Mapping[str, Any] | None,
) -> Any:
    """``configure_optimizers``'s answer for a pretraining module: the optimizer over
    ``param_groups`` and, unless ``scheduler_cfg`` is none, its per-step schedule over the
    ``trainer``'s estimated steps."""
    optimizer = build_optimizer(param_groups, optimizer_cfg)
    steps = int(trainer.estimated_stepping_batches)
    per_epoch = max(1, steps // max(1, int(trainer.max_epochs or 1)))
    scheduler = build_scheduler(optimizer, scheduler_cfg, steps, per_epoch)
    if scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
