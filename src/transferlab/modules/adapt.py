"""Adaptation methods as LightningModules on the shared :class:`ClassifierModule`.

Training batches are dicts ``{"source": (images, labels), "target": images}``: target batches
carry no labels (see :class:`transferlab.data.domains.UnlabeledImages`), and a target batch that
does carry them is refused. Validation and test batches are ``(images, labels)`` as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transferlab.core.registry import Registry
from transferlab.models import Backbone
from transferlab.modules.classifier import ClassifierModule
from transferlab.modules.grl import dann_lambda, grad_reverse
from transferlab.modules.pseudo_labels import pseudo_label_loss

Batch = Mapping[str, Any]
SourceBatch = tuple[torch.Tensor, torch.Tensor] | None
StepLoss = tuple[torch.Tensor, dict[str, torch.Tensor | float]]


class AdaptModule(ClassifierModule):
    """The base of methods that learn from unlabelled target batches.

    Subclasses implement :meth:`adaptation_loss`; this class unpacks the batch, logs
    ``train/loss`` and the method's own terms (``train/<name>``), and knows the training
    progress in [0, 1] (for schedules such as DANN's lambda).
    """

    strategy_name = "adapt"
    needs_source_batches = True

    def _unpack(self, batch: Batch) -> tuple[SourceBatch, torch.Tensor]:
        target = batch["target"]
        if not isinstance(target, torch.Tensor):
            raise ValueError("target training batches must be images only (no labels)")
        source = batch.get("source")
        if self.needs_source_batches and source is None:
            raise ValueError(f"{type(self).__name__} needs labelled source batches")
        return source, target

    @property
    def progress(self) -> float:
        """Fraction of the training steps done (0 outside a trainer)."""
        trainer = self._trainer
        if trainer is None:
            return 0.0
        total = max(1, int(trainer.estimated_stepping_batches))
        return min(1.0, self.global_step / total)

    def source_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on labelled source images (also updates ``train/acc``)."""
        self.train_acc(logits, labels)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def adaptation_loss(self, source: SourceBatch, target: torch.Tensor) -> StepLoss:
        """The loss of one step and the terms to log."""
        raise NotImplementedError

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        source, target = self._unpack(batch)
        loss, terms = self.adaptation_loss(source, target)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        for name, value in terms.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True)
        return loss

    def joint_features(
        self, source_images: torch.Tensor, target_images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features of source and target images in one forward pass (BatchNorm sees
        the mixed batch, as in the usual DANN implementations)."""
        features = self.backbone(torch.cat([source_images, target_images]))
        return features[: len(source_images)], features[len(source_images) :]


class DANNModule(AdaptModule):
    """Domain-adversarial training (Ganin & Lempitsky 2015).

    A domain discriminator learns to tell source from target features; the gradient reversal
    layer makes the backbone learn features it cannot tell apart, while the head keeps
    classifying the labelled source images. ``lambda`` follows ``2/(1+exp(-gamma p)) - 1``.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        *,
        weight: float = 1.0,
        gamma: float = 10.0,
        hidden: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, num_classes, **kwargs)
        self.domain_weight = float(weight)
        self.gamma = float(gamma)
        self.discriminator = nn.Sequential(
            nn.Linear(backbone.num_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def adaptation_loss(self, source: SourceBatch, target: torch.Tensor) -> StepLoss:
        images, labels = source
        source_features, target_features = self.joint_features(images, target)
        class_loss = self.source_loss(self.head(source_features), labels)
        lambda_ = dann_lambda(self.progress, self.gamma)
        features = torch.cat([source_features, target_features])
        domain_logits = self.discriminator(grad_reverse(features, lambda_)).squeeze(1)
        domain = torch.cat([torch.zeros(len(images)), torch.ones(len(target))]).to(features)
        domain_loss = F.binary_cross_entropy_with_logits(domain_logits, domain)
        domain_acc = ((domain_logits > 0).float() == domain).float().mean()
        loss = class_loss + self.domain_weight * domain_loss
        terms = {
            "class_loss": class_loss,
            "domain_loss": domain_loss,
            "domain_acc": domain_acc,
            "grl_lambda": lambda_,
        }
        return loss, terms

    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = super().parameter_groups()
        params = list(self.discriminator.parameters())
        return [*groups, {"params": params, "lr_scale": 1.0, "name": "discriminator"}]


class PseudoLabelModule(AdaptModule):
    """Confidence-thresholded self-training (Lee 2013; the FixMatch threshold, Sohn et al.
    2020): target images whose prediction is at least ``threshold`` confident are trained on
    that prediction, beside the labelled source images.

    ``alignment=true`` adds distribution alignment (ReMixMatch, Berthelot et al. 2020): each
    target prediction is divided by a running mean of the target predictions (momentum
    ``alignment_momentum``) and renormalised before thresholding, so a class the model
    over-predicts on the target loses pseudo-labels instead of taking them all over.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        *,
        threshold: float = 0.9,
        weight: float = 1.0,
        alignment: bool = False,
        alignment_momentum: float = 0.99,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, num_classes, **kwargs)
        self.threshold = float(threshold)
        self.target_weight = float(weight)
        self.alignment = bool(alignment)
        self.alignment_momentum = float(alignment_momentum)
        self.register_buffer("target_prediction_mean", torch.full((num_classes,), 1 / num_classes))

    @torch.no_grad()
    def pseudo_label_probabilities(self, target_logits: torch.Tensor) -> torch.Tensor:
        """Target class probabilities, distribution-aligned when ``alignment`` is on (the
        running mean is updated in training mode only)."""
        probs = target_logits.detach().float().softmax(dim=1)
        if not self.alignment:
            return probs
        if self.training:
            mean = self.target_prediction_mean
            mean.mul_(self.alignment_momentum).add_((1 - self.alignment_momentum) * probs.mean(0))
        aligned = probs / self.target_prediction_mean.clamp_min(1e-6)
        return aligned / aligned.sum(dim=1, keepdim=True)

    def adaptation_loss(self, source: SourceBatch, target: torch.Tensor) -> StepLoss:
        images, labels = source
        source_features, target_features = self.joint_features(images, target)
        class_loss = self.source_loss(self.head(source_features), labels)
        target_logits = self.head(target_features)
        probabilities = self.pseudo_label_probabilities(target_logits)
        target_loss, mask = pseudo_label_loss(probabilities, target_logits, self.threshold)
        loss = class_loss + self.target_weight * target_loss
        terms = {"class_loss": class_loss, "pseudo_loss": target_loss, "mask_rate": mask.mean()}
        return loss, terms


def batchnorm_affine_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The scale and shift parameters of every BatchNorm layer in ``module``."""
    return [
        param
        for layer in module.modules()
        if isinstance(layer, nn.modules.batchnorm._BatchNorm)
        for param in (layer.weight, layer.bias)
        if param is not None
    ]


class TentModule(AdaptModule):
    """Tent (Wang et al. 2021): minimise the entropy of target predictions, updating only the
    BatchNorm affine parameters, BatchNorm in train mode on target batches (so its running
    statistics become the target's). Source-free: needs no source batches."""

    needs_source_batches = False

    def __init__(self, backbone: Backbone, num_classes: int, **kwargs: Any) -> None:
        super().__init__(backbone, num_classes, **kwargs)
        if not batchnorm_affine_parameters(self.backbone):
            raise ValueError("tent needs a backbone with BatchNorm layers")
        self._freeze_all_but_batchnorm()

    def _freeze_all_but_batchnorm(self) -> None:
        self.requires_grad_(False)
        for param in batchnorm_affine_parameters(self.backbone):
            param.requires_grad_(True)

    def apply_freezing(self, epoch: int) -> None:
        super().apply_freezing(epoch)
        self._freeze_all_but_batchnorm()

    def adaptation_loss(self, source: SourceBatch, target: torch.Tensor) -> StepLoss:
        log_probs = self(target).log_softmax(dim=1)
        entropy = -(log_probs.exp() * log_probs).sum(dim=1).mean()
        return entropy, {"entropy": entropy}

    def parameter_groups(self) -> list[dict[str, Any]]:
        params = batchnorm_affine_parameters(self.backbone)
        return [{"params": params, "lr_scale": 1.0, "name": "batchnorm_affine"}]


class AdaBNModule(AdaptModule):
    """AdaBN (Li et al. 2017): every BatchNorm layer's running statistics re-estimated on target
    batches (BatchNorm in train mode), no parameter changed: no loss, no update. The control
    that separates what Tent's entropy minimisation adds from what the target's BatchNorm
    statistics alone do. Source-free: needs no source batches."""

    needs_source_batches = False

    def __init__(self, backbone: Backbone, num_classes: int, **kwargs: Any) -> None:
        super().__init__(backbone, num_classes, **kwargs)
        if not batchnorm_affine_parameters(self.backbone):
            raise ValueError("adabn needs a backbone with BatchNorm layers")
        self.automatic_optimization = False
        self.requires_grad_(False)

    def limit_trainable(self) -> None:
        self.requires_grad_(False)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        _, target = self._unpack(batch)
        with torch.no_grad():
            self(target)  # BatchNorm in train mode: its running statistics move to the target's
        self.optimizers().step()  # a no-op that the Trainer counts (max_steps, step schedules)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # nothing to optimise: an optimizer over one empty tensor, so that a step is a step
        return torch.optim.SGD([nn.Parameter(torch.zeros(0))], lr=1.0)


@dataclass(frozen=True)
class AdaptMethod:
    """How a method trains: its module (None = no training), the batches it gets."""

    module: type[ClassifierModule] | None
    source_batches: bool
    target_batches: str  # "none" | "unlabeled" | "labeled"
    doc: str


ADAPT_METHODS: Registry[AdaptMethod] = Registry("strategy.method")
ADAPT_METHODS.register(
    "source_only", AdaptMethod(None, False, "none", "the source model as it is (lower bound)")
)
ADAPT_METHODS.register(
    "dann", AdaptMethod(DANNModule, True, "unlabeled", "domain-adversarial (gradient reversal)")
)
ADAPT_METHODS.register(
    "tent", AdaptMethod(TentModule, False, "unlabeled", "entropy minimisation on BatchNorm")
)
ADAPT_METHODS.register(
    "adabn",
    AdaptMethod(AdaBNModule, False, "unlabeled", "BatchNorm statistics re-estimated on target"),
)
ADAPT_METHODS.register(
    "pseudo_label",
    AdaptMethod(PseudoLabelModule, True, "unlabeled", "confidence-thresholded self-training"),
)
ADAPT_METHODS.register(
    "oracle", AdaptMethod(ClassifierModule, False, "labeled", "target labels (upper bound)")
)
