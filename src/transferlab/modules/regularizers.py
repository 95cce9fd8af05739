"""Regularisers of fine-tuning (``strategy.regularizer``): loss terms added to the task loss
that keep the fine-tuned network near its source or its features well conditioned.

- ``l2sp`` (Li et al. 2018, "Explicit inductive bias for transfer learning"):
  ``alpha/2 * ||w - w_source||^2`` on the transferred backbone weights plus
  ``beta/2 * ||w||^2`` on the new ones (the head, re-initialised stages).
- ``delta`` (Li et al. 2019, "DELTA: deep learning transfer using feature map with attention"):
  ``alpha/2 * sum_j sum_c a_jc * mean ||FM_jc(w) - FM_jc(w_source)||^2`` over the outputs of the
  transferred stages, plus the same ``beta`` term. Simplified attention (no extra pass before
  training): ``a_jc`` is channel ``c``'s share of the source map's energy on the batch, scaled
  to average 1 over the channels, where DELTA estimates it from how much a source-feature
  classifier's loss grows when the channel is removed.
- ``bss`` (Chen et al. 2019, "Catastrophic forgetting meets negative transfer: batch spectral
  shrinkage"): ``alpha * sum of the k smallest squared singular values`` of the batch's feature
  matrix (the head's input).

Each is a :class:`Regularizer` registered in :data:`REGULARIZERS` with its options model; the
finetune module builds the chosen one once and adds its terms to every training step.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch
from pydantic import NonNegativeFloat, PositiveInt
from torch import nn

from transferlab.core.errors import ConfigError
from transferlab.core.registry import Registry
from transferlab.modules.method_options import MethodOptions, method_name, method_options


@dataclass(frozen=True)
class ModelParts:
    """What a regulariser reads of the network being fine-tuned (``model``: its ``backbone``
    and ``head``, read at each use, so a subclass may replace the head) and how many leading
    backbone stages hold the source's weights."""

    model: nn.Module
    transferred: int

    @property
    def backbone(self) -> nn.Module:
        return self.model.backbone

    @property
    def head(self) -> nn.Module:
        return self.model.head

    def source_stages(self) -> list[nn.Module]:
        return list(self.backbone.stages()[: self.transferred])

    def source_parameters(self) -> list[nn.Parameter]:
        """The parameters that start from the source's weights."""
        return [p for stage in self.source_stages() for p in stage.parameters()]

    def new_parameters(self) -> list[nn.Parameter]:
        """The parameters that do not: the head and any re-initialised stages."""
        fresh = self.backbone.stages()[self.transferred :]
        return [*self.head.parameters(), *(p for stage in fresh for p in stage.parameters())]


class Tap:
    """Keeps the latest forward output of some modules."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.values: list[torch.Tensor | None] = [None] * len(modules)
        for index, module in enumerate(modules):
            module.register_forward_hook(partial(self._keep, index))

    def _keep(self, index: int, module: nn.Module, args: Any, output: Any) -> None:
        self.values[index] = output

    def take(self) -> list[torch.Tensor]:
        """The kept tensors of the last forward pass (then forgotten)."""
        values, self.values = self.values, [None] * len(self.values)
        if any(v is None for v in values):
            raise RuntimeError("a regulariser's tap saw no forward pass of its modules")
        return [v for v in values if v is not None]


class Regularizer:
    """A loss term of fine-tuning. ``Options`` are its ``strategy.regularizer`` keys;
    ``needs_source``: it measures the distance to the source's weights or features, so it
    needs transferred stages."""

    Options: ClassVar[type[MethodOptions]] = MethodOptions
    needs_source: ClassVar[bool] = False
    # it penalises how far the backbone weights move (meaningless when they are frozen)
    penalises_weights: ClassVar[bool] = False

    def __init__(self, parts: ModelParts, options: Any) -> None:
        self.parts = parts
        self.options = options

    def terms(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        features: torch.Tensor,
        logits: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The weighted loss terms of one training batch (``features``: the head's input), by
        name."""
        raise NotImplementedError


REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")


def squared_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum ||t||^2`` over ``tensors`` (0 for none)."""
    return sum((t.pow(2).sum() for t in tensors), torch.zeros(()))


def new_weights_term(parts: ModelParts, beta: float) -> dict[str, torch.Tensor]:
    """``{"l2_new": beta/2 * ||w_new||^2}`` on the head and re-initialised stages (none when
    ``beta`` is 0)."""
    return {"l2_new": 0.5 * beta * squared_norm(parts.new_parameters())} if beta > 0 else {}


class AnchoredOptions(MethodOptions):
    alpha: NonNegativeFloat = 0.01  # weight of the distance to the source
    beta: NonNegativeFloat = 0.01  # weight of the L2 penalty on the new weights


@REGULARIZERS.register("l2sp")
class L2SP(Regularizer):
    """``alpha/2 * ||w - w_source||^2`` on the transferred weights + ``beta/2 * ||w_new||^2``."""

    Options = AnchoredOptions
    needs_source = True
    penalises_weights = True

    def __init__(self, parts: ModelParts, options: AnchoredOptions) -> None:
        super().__init__(parts, options)
        self.anchors = [(p, p.detach().clone()) for p in parts.source_parameters()]

    def terms(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        features: torch.Tensor,
        logits: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        if self.anchors and self.anchors[0][1].device != self.anchors[0][0].device:
            self.anchors = [(p, p0.to(p.device)) for p, p0 in self.anchors]
        drift = squared_norm([p - p0 for p, p0 in self.anchors])
        return {
            "l2sp": 0.5 * self.options.alpha * drift,
            **new_weights_term(self.parts, self.options.beta),
        }


def attended_distance(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``1/2 sum_c a_c * mean_(batch, positions) (target_c - source_c)^2``, ``a_c`` channel c's
    share of the source map's energy, scaled to average 1 over the channels. Maps are
    ``(B, C, ...)``; a ``(B, F)`` feature vector counts as ``F`` channels of one position."""
    batch, channels = source.shape[:2]
    target = target.reshape(batch, channels, -1)
    source = source.reshape(batch, channels, -1)
    energy = source.pow(2).mean(dim=(0, 2))
    attention = channels * energy / energy.sum().clamp_min(1e-12)
    per_channel = (target - source).pow(2).mean(dim=(0, 2))
    return 0.5 * (attention * per_channel).sum()


def frozen_copy(stages: Sequence[nn.Module]) -> nn.ModuleList:
    """A copy of ``stages`` that never trains: no gradients, BatchNorm statistics that never
    move (momentum 0, so batch statistics are still used in train mode)."""
    copied = nn.ModuleList(copy.deepcopy(list(stages)))
    for param in copied.parameters():
        param.requires_grad_(False)
    for module in copied.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0
    return copied


@REGULARIZERS.register("delta")
class Delta(Regularizer):
    """Attention-weighted distance between the transferred stages' outputs and the source's
    (see the module docstring) + ``beta/2 * ||w_new||^2``."""

    Options = AnchoredOptions
    needs_source = True

    def __init__(self, parts: ModelParts, options: AnchoredOptions) -> None:
        super().__init__(parts, options)
        stages = parts.source_stages()
        self.tap = Tap(stages)
        # a tuple keeps the copy out of the module tree (state dict, optimizer, device moves)
        self.source = (frozen_copy(stages),)

    def source_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The source stages' outputs on ``images``, each stage in its target's train/eval
        mode (so the maps agree at the source weights)."""
        source = self.source[0]
        if next(source.parameters(), images).device != images.device:
            source.to(images.device)
        maps, x = [], images
        with torch.no_grad():
            for copied, stage in zip(source, self.parts.source_stages()):
                copied.train(stage.training)
                x = copied(x)
                maps.append(x)
        return maps

    def terms(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        features: torch.Tensor,
        logits: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        targets = self.tap.take()
        distance = sum(
            (attended_distance(t, s) for t, s in zip(targets, self.source_maps(images))),
            torch.zeros((), device=images.device),
        )
        return {
            "delta": self.options.alpha * distance,
            **new_weights_term(self.parts, self.options.beta),
        }


class BSSOptions(MethodOptions):
    alpha: NonNegativeFloat = 0.001  # weight of the penalty
    k: PositiveInt = 1  # how many of the smallest singular values are penalised


@REGULARIZERS.register("bss")
class BatchSpectralShrinkage(Regularizer):
    """``alpha * sum of the k smallest squared singular values`` of the batch's features (the
    head's input, one row per image)."""

    Options = BSSOptions

    def terms(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        features: torch.Tensor,
        logits: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        singular = torch.linalg.svdvals(features.flatten(1).float())  # descending
        smallest = singular[-min(self.options.k, len(singular)) :]
        return {"bss": self.options.alpha * smallest.pow(2).sum()}


# named in the literature and asked for, not built yet: the one line that says why
NOT_YET = {
    "cotuning": (
        "regularizer=cotuning (Co-Tuning) needs the source's classifier head and no source "
        "hands one over yet (source=pretrain caches only the backbone); use l2sp, delta or bss"
    ),
}


def check_regularizer(node: str | Mapping[str, Any] | None) -> tuple[str, Any]:
    """``(name, options)`` of a ``strategy.regularizer`` node, checked (``("none", None)``);
    an unknown name is one line listing the valid ones."""
    asked = node if isinstance(node, str) else (node or {}).get("name")
    if asked in NOT_YET:
        raise ConfigError(NOT_YET[asked])
    name = method_name("regularizer", node, REGULARIZERS.names())
    if name == "none":
        return name, None
    return name, method_options("strategy.regularizer", node, REGULARIZERS.get(name).Options)


def build_regularizer(
    node: str | Mapping[str, Any] | None, parts: ModelParts
) -> Regularizer | None:
    """The regulariser of ``node`` on ``parts`` (None for ``none``)."""
    name, options = check_regularizer(node)
    if name == "none":
        return None
    cls = REGULARIZERS.get(name)
    if cls.needs_source and parts.transferred == 0:
        raise ConfigError(
            f"regularizer={name} keeps the network near the source's weights, but "
            "transfer_stages=0 keeps none of them; use transfer_stages >= 1 (null: all)"
        )
    return cls(parts, options)
