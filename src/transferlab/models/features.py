"""A frozen backbone's pooled features of a batch of inputs, computed in eval mode."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import nn


@torch.no_grad()
def pooled_features(
    backbone: nn.Module,
    inputs: torch.Tensor,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    context: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
) -> torch.Tensor:
    """Pooled float32 features ``(N, num_features)`` of ``inputs`` (``prepare``d per chunk of
    ``batch_size`` first, if given), with the backbone in eval mode (frozen BatchNorm
    statistics, no dropout) on ``device``, each chunk run inside ``context()`` (e.g. the
    trainer's autocast). The backbone's train/eval mode is restored afterwards."""
    was_training = backbone.training
    backbone.eval().to(device)
    try:
        chunks = []
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            chunk = prepare(chunk) if prepare is not None else chunk
            with context():
                chunks.append(backbone(chunk.to(device)).float().cpu())
    finally:
        backbone.train(was_training)
    if not chunks:
        return torch.empty(0, int(getattr(backbone, "num_features", 0)))
    return torch.cat(chunks)
