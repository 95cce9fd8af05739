"""The shared base of every supervised strategy: backbone + head, metrics, optimizers."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Annotated, Any

import lightning as L
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from transferlab.models import Backbone, LinearHead
from transferlab.modules.freezing import FreezeSchedule, keep_frozen_in_eval, set_frozen_stages
from transferlab.modules.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

# Frozen stages are kept in eval mode on purpose (BatchNorm statistics stay fixed).
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]  # a rate in [0, 1)
# the ``strategy.<key>`` settings every classifier module takes
CLASSIFIER_OPTIONS = (
    "optimizer",
    "scheduler",
    "head_dropout",
    "label_smoothing",
    "test_time_flip",
)


class ClassifierModule(L.LightningModule):
    """A backbone with a linear head trained by cross-entropy.

    ``freeze`` (a :class:`FreezeSchedule`) says which backbone stages are frozen at each epoch;
    subclasses may change the backbone's learning-rate scale (:meth:`backbone_lr_scale`).
    ``input_shape`` (channels, height, width) is what the backbone is fed.
    ``test_time_flip`` averages, in evaluation (validation, test, predictions), the logits of
    each image and of its horizontal mirror image (test-time augmentation; it helps a model
    trained with random flips and hurts one that was not).
    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``test/loss``,
    ``test/acc`` and ``test/acc_per_class_mean`` (balanced accuracy).
    """

    strategy_name = "classifier"
    # constructor arguments that are objects, not settings: kept out of the checkpoint's
    # hyperparameters (which hold plain containers only, for ``weights_only`` loading)
    NOT_HYPERPARAMETERS: tuple[str, ...] = ("backbone", "freeze")

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        head_dropout: Fraction = 0.0,
        label_smoothing: Fraction = 0.0,
        test_time_flip: bool = False,
        class_names: list[str] | None = None,
        input_shape: tuple[int, int, int] | None = None,
        freeze: FreezeSchedule | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=list(self.NOT_HYPERPARAMETERS))
        self.backbone = backbone
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.freeze = freeze or FreezeSchedule()
        self.freeze.check_stages(len(backbone.stages()), backbone.name, backbone.stage_names)
        self.head = LinearHead(backbone.num_features, num_classes, dropout=head_dropout)
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.optimizer_cfg = dict(optimizer or {"name": "adamw", "lr": 1e-3})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})
        self.label_smoothing = label_smoothing
        self.test_time_flip = bool(test_time_flip)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc_balanced = MulticlassAccuracy(num_classes, average="macro")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.num_frozen = 0
        self.test_details: dict[str, Any] = {}
        # the parameters that were trainable in some epoch of this fit (see parameter_counts)
        self.trained_names: set[str] = set()
        self.freezing_applied = False  # set by apply_freezing: the counts below are known

    # ----- freezing policy -----
    def frozen_stages_at(self, epoch: int) -> int:
        """How many backbone stages (from the input side) are frozen during ``epoch``."""
        return self.freeze.frozen_stages_at(epoch, len(self.backbone.stages()))

    def backbone_lr_scale(self) -> float:
        """Backbone learning rate as a fraction of the head's."""
        return 1.0

    def apply_freezing(self, epoch: int) -> None:
        """Freeze the stages the policy asks for at ``epoch`` (a pure function of the epoch,
        so a resumed run restores the same state)."""
        self.num_frozen = self.frozen_stages_at(epoch)
        set_frozen_stages(self.backbone.stages(), self.num_frozen)
        self.limit_trainable()
        if self.training:
            keep_frozen_in_eval(self.backbone.stages(), self.num_frozen)
        self.trained_names |= {n for n, p in self.named_parameters() if p.requires_grad}
        self.freezing_applied = True

    def limit_trainable(self) -> None:
        """Freeze what the strategy never trains, after the schedule's freezing (none here)."""

    def parameter_counts(self) -> dict[str, Any]:
        """``trainable_params`` (trainable in some epoch of the fit), ``total_params`` and
        ``trainable_fraction``; empty before a fit."""
        if not self.freezing_applied:
            return {}
        params = dict(self.named_parameters())
        total = sum(p.numel() for p in params.values())
        trained = sum(params[n].numel() for n in self.trained_names if n in params)
        return {
            "trainable_params": trained,
            "total_params": total,
            "trainable_fraction": round(trained / max(total, 1), 6),
        }

    def train(self, mode: bool = True) -> ClassifierModule:
        super().train(mode)
        if mode:
            keep_frozen_in_eval(self.backbone.stages(), self.num_frozen)
        return self

    def on_fit_start(self) -> None:
        self.apply_freezing(self.current_epoch)
        counts = self.parameter_counts()
        log.info(
            "trainable parameters: %d of %d (%.2f%%)",
            counts["trainable_params"],
            counts["total_params"],
            100 * counts["trainable_fraction"],
        )

    def on_train_epoch_start(self) -> None:
        self.apply_freezing(self.current_epoch)
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        self.log("train/trainable_params", float(trainable), on_step=False, on_epoch=True)
        self.log(
            "train/trainable_fraction", trainable / max(total, 1), on_step=False, on_epoch=True
        )

    # ----- forward and steps -----
    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """What the head reads: the backbone's pooled features of images ``(B, C, H, W)``, or
        ``inputs`` themselves when they already are pooled features ``(B, F)`` (the
        frozen-feature cache feeds those in epochs where the backbone is frozen)."""
        return inputs if inputs.dim() == 2 else self.backbone(inputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.features(inputs))
        if self.test_time_flip and not self.training and inputs.dim() == 4:
            logits = (logits + self.head(self.features(inputs.flip(-1)))) / 2
        return logits

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        images, labels = batch
        features = self.features(images)
        logits = self.head(features)
        task_loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        terms = self.regularization(images, labels, features, logits)
        loss = task_loss + sum(terms.values()) if terms else task_loss
        self.train_acc(logits, labels)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        if terms:  # train/loss is their sum with the task's cross-entropy
            epoch = {"on_step": False, "on_epoch": True, "sync_dist": True}
            self.log("train/task_loss", task_loss, **epoch)
            self.log("train/reg_loss", sum(terms.values()), **epoch)
            for name, value in terms.items():
                self.log(f"train/{name}", value, **epoch)
        return loss

    def regularization(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        features: torch.Tensor,
        logits: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Loss terms added to the task loss of a training batch, by name (none here)."""
        return {}

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.val_acc(logits, labels)
        self.log("val/loss", F.cross_entropy(logits, labels), on_epoch=True, sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.test_acc(logits, labels)
        self.test_acc_balanced(logits, labels)
        self.test_confusion.update(logits, labels)
        self.log("test/loss", F.cross_entropy(logits, labels), on_epoch=True, sync_dist=True)
        self.log("test/acc", self.test_acc, on_epoch=True)
        self.log("test/acc_per_class_mean", self.test_acc_balanced, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        confusion = self.test_confusion.compute().cpu()
        per_class = confusion.diag().float() / confusion.sum(dim=1).clamp(min=1).float()
        self.test_details = {
            "per_class_acc": {n: float(a) for n, a in zip(self.class_names, per_class)},
            "confusion_matrix": confusion.tolist(),
            "class_names": self.class_names,
        }

    # ----- optimization -----
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Backbone and head parameters, the backbone at ``backbone_lr_scale``."""
        groups = [{"params": list(self.head.parameters()), "lr_scale": 1.0, "name": "head"}]
        backbone_params = list(self.backbone.parameters())
        if backbone_params:
            groups.insert(
                0,
                {
                    "params": backbone_params,
                    "lr_scale": self.backbone_lr_scale(),
                    "name": "backbone",
                },
            )
        return groups

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.parameter_groups(), self.optimizer_cfg)
        total_steps = int(self.trainer.estimated_stepping_batches)
        batches = self.trainer.num_training_batches
        accumulate = max(1, int(self.trainer.accumulate_grad_batches))
        steps_per_epoch = max(1, int(batches) // accumulate) if batches != float("inf") else 1
        scheduler = build_scheduler(optimizer, self.scheduler_cfg, total_steps, steps_per_epoch)
        if scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def trainable_parameter_count(module: nn.Module) -> int:
    """Parameters that currently receive gradients."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
