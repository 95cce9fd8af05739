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
- ``cotuning`` (You et al. 2020, "Co-Tuning for Transfer Learning"): the source's classifier
  head is kept and trained beside the new one; ``alpha * CE(source_head(features),
  p(y_s | y_t))`` where the relationship ``p(y_s | y_t)`` is the source head's softmax averaged
  over the training images of each target class, at the source weights, before training (the
  paper's direct approach, as TLlib's ``Relationship``).

Each is a :class:`Regularizer` registered in :data:`REGULARIZERS` with its options model; the
finetune module builds the chosen one once and adds its terms to every training step.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import NonNegativeFloat, PositiveInt
from torch import nn

from transferlab.core.errors import ConfigError
from transferlab.core.registry import Registry
from transferlab.modules.method_options import MethodOptions, method_name, method_options

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelParts:
    """What a regulariser reads of the network being fine-tuned (``model``: its ``backbone``
    and ``head``, read at each use, so a subclass may replace the head) and how many leading
    backbone stages hold the source's weights."""

    model: nn.Module
    transferred: int
    # the source's classifier head (source classes from pooled features), where one was handed
    source_head: nn.Module | None = None

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

    # what a regulariser with its own trained weights or a statistic of the training data adds
    def extra_parameters(self) -> list[nn.Parameter]:
        """Weights the regulariser trains beside the model's (outside its state dict)."""
        return []

    def needs_training_data(self) -> bool:
        """Whether :meth:`prepare` must see the training images before the first step."""
        return False

    def prepare(
        self,
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        features: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        """Read the (un-augmented) training batches once, ``features`` the model's pooled
        features of a batch's inputs, before training starts."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps of the regulariser, so a resumed fit continues it."""
        return {}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict`."""


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


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that never trains: no gradients, BatchNorm statistics that never
    move (momentum 0, so batch statistics are still used in train mode)."""
    copied = copy.deepcopy(module)
    for param in copied.parameters():
        param.requires_grad_(False)
    for part in copied.modules():
        if isinstance(part, nn.modules.batchnorm._BatchNorm):
            part.momentum = 0.0
    return copied


@REGULARIZERS.register("delta")
class Delta(Regularizer):
    """Attention-weighted distance between the transferred stages' outputs and the source's
    (see the module docstring) + ``beta/2 * ||w_new||^2``."""

    Options = AnchoredOptions
    needs_source = True

    def __init__(self, parts: ModelParts, options: AnchoredOptions) -> None:
        super().__init__(parts, options)
        backbone = parts.backbone
        outputs = backbone.stage_output_modules()[: parts.transferred]
        names = {id(module): name for name, module in backbone.named_modules()}
        paths = [names[id(module)] for module in outputs]
        # the whole backbone, copied before the tap is hooked on (so the copy carries none);
        # timm's stages cannot run alone, so both networks run whole and are tapped alike
        source = frozen_copy(backbone)
        self.tap = Tap(outputs)
        self.source_tap = Tap([source.get_submodule(path) for path in paths])
        # a tuple keeps the copy out of the module tree (state dict, optimizer, device moves)
        self.source = (source,)

    def source_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The source stages' outputs on ``images``, every module in its target's train/eval
        mode (so the maps agree at the source weights)."""
        source = self.source[0]
        if next(source.parameters(), images).device != images.device:
            source.to(images.device)
        modes = {name: module.training for name, module in self.parts.backbone.named_modules()}
        for name, module in source.named_modules():
            module.training = modes.get(name, module.training)
        with torch.no_grad():
            source(images)
        return self.source_tap.take()

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
    head's input, one row per image). A batch with fewer distinct images than feature
    dimensions (a tiny labelled set drawn with replacement) has zero singular values there, so
    the penalty is zero: said once in the log."""

    Options = BSSOptions
    _warned_rank_deficient = False

    def terms(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        features: torch.Tensor,
        logits: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        singular = torch.linalg.svdvals(features.flatten(1).float())  # descending
        smallest = singular[-min(self.options.k, len(singular)) :]
        if not self._warned_rank_deficient and bool(smallest.max() <= 1e-5 * singular[0]):
            self._warned_rank_deficient = True
            log.warning(
                "bss: the %d smallest singular values of the batch's features are ~0 (the batch "
                "has fewer distinct images than feature dimensions, %d), so the penalty has "
                "no effect; it acts on batches with more distinct images than that",
                len(smallest),
                features.flatten(1).shape[1],
            )
        return {"bss": self.options.alpha * smallest.pow(2).sum()}


class CoTuningOptions(MethodOptions):
    alpha: NonNegativeFloat = 2.3  # weight of the source-label loss (TLlib's trade-off)


NEEDS_HEAD = (
    "regularizer=cotuning (Co-Tuning) needs the source's classifier head, and none was handed "
    "over; use source=pretrain, source=imagenet with model=efficientnet_lite0|1|2, or "
    "source=checkpoint of a classifier run"
)


def category_relationship(
    probabilities: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """``p(y_s | y_t)``: row ``t`` is the mean of ``probabilities`` (the source head's softmax,
    ``(N, S)``) over the examples of target class ``t``; a class without examples gets the
    uniform row. Rows sum to 1."""
    sums = torch.zeros(num_classes, probabilities.shape[1], dtype=torch.float64)
    sums.index_add_(0, labels.long(), probabilities.double())
    counts = torch.bincount(labels.long(), minlength=num_classes).double().unsqueeze(1)
    uniform = torch.full_like(sums, 1.0 / probabilities.shape[1])
    return torch.where(counts > 0, sums / counts.clamp_min(1), uniform).float()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``mean_b sum_s -targets[b, s] * log_softmax(logits)[b, s]`` (TLlib's CoTuningLoss)."""
    return -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


@REGULARIZERS.register("cotuning")
class CoTuning(Regularizer):
    """``alpha * CE(source_head(features), p(y_s | y_t))`` with the source head trained beside
    the new one (at the backbone's learning rate, as TLlib) and the relationship learnt from
    the source head's predictions on the training images before training."""

    Options = CoTuningOptions
    needs_source = True

    def __init__(self, parts: ModelParts, options: CoTuningOptions) -> None:
        super().__init__(parts, options)
        if parts.source_head is None:
            raise ConfigError(NEEDS_HEAD)
        # a tuple keeps the head out of the model's state dict: checkpoints stay plain
        self.head = (parts.source_head,)
        for param in parts.source_head.parameters():
            param.requires_grad_(True)
        self.relationship: torch.Tensor | None = None

    def source_logits(self, features: torch.Tensor) -> torch.Tensor:
        head = self.head[0]
        if next(head.parameters()).device != features.device:
            head.to(features.device)  # in place: the optimizer keeps the same parameters
        return head(features.flatten(1))

    def extra_parameters(self) -> list[nn.Parameter]:
        return list(self.head[0].parameters())

    def needs_training_data(self) -> bool:
        return self.relationship is None

    def prepare(
        self,
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        features: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        probabilities, labels = [], []
        with torch.no_grad():
            for inputs, batch_labels in batches:
                logits = self.source_logits(features(inputs))
                probabilities.append(F.softmax(logits.float(), dim=1).cpu())
                labels.append(batch_labels.cpu())
        num_classes = int(self.parts.model.num_classes)
        self.relationship = category_relationship(
            torch.cat(probabilities), torch.cat(labels), num_classes
        )

    def terms(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        features: torch.Tensor,
        logits: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        if self.relationship is None:
            raise RuntimeError("regularizer=cotuning: the relationship was not learnt (prepare)")
        targets = self.relationship.to(features.device)[labels]
        loss = soft_cross_entropy(self.source_logits(features), targets)
        return {"cotuning": self.options.alpha * loss}

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"head.{k}": v for k, v in self.head[0].state_dict().items()}
        if self.relationship is not None:
            state["relationship"] = self.relationship
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        head = {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}
        if head:
            self.head[0].load_state_dict(head)
        if "relationship" in state:
            self.relationship = state["relationship"].detach().cpu()


def check_regularizer(node: str | Mapping[str, Any] | None) -> tuple[str, Any]:
    """``(name, options)`` of a ``strategy.regularizer`` node, checked (``("none", None)``);
    an unknown name is one line listing the valid ones."""
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
