"""Bilinear compatibility (ALE / DeViSE style) trained with cross-entropy over seen classes,
on frozen features or fine-tuning the backbone with it, under the Lightning Trainer."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from transferlab.core.errors import ConfigError
from transferlab.zeroshot.methods.base import ClassSet, register_method
from transferlab.zeroshot.methods.module import ZeroShotModule, finite


@register_method("bilinear")
class Bilinear(ZeroShotModule):
    """Learns ``W`` of ``F(x, c) = theta(x)^T W phi(c)`` by softmax cross-entropy over the seen
    classes (Adam, ``epochs`` epochs of shuffled batches). With ``finetune_backbone`` the
    backbone ``theta`` is trained too, at ``lr * backbone_lr_ratio``, and the method takes
    preprocessed images as inputs."""

    shuffle = True

    def __init__(
        self,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        epochs: int = 30,
        batch_size: int = 256,
        finetune_backbone: bool = False,
        backbone_lr_ratio: float = 0.1,
        backbone: nn.Module | None = None,
        device: str = "cpu",
    ) -> None:
        if finetune_backbone and backbone is None:
            raise ConfigError("bilinear finetune_backbone=true needs a backbone (a source)")
        super().__init__(device)
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.embed = copy.deepcopy(backbone) if finetune_backbone else None
        self.backbone_lr_ratio = float(backbone_lr_ratio)
        self.inputs = "images" if finetune_backbone else "features"

    def setup_classes(self, x: torch.Tensor, seen: ClassSet, unseen: ClassSet) -> None:
        super().setup_classes(x, seen, unseen)
        dim = self.embed.num_features if self.embed is not None else x.shape[1]
        self.project = nn.Linear(dim, seen.semantics.shape[1], bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() if self.embed is None else F.normalize(self.embed(x), dim=1)

    def compatibility(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(x)) @ semantics.T

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        loss = finite(F.cross_entropy(self.compatibility(x, self.seen_semantics), y))
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = [{"params": self.project.parameters(), "lr": self.lr}]
        if self.embed is not None:
            groups.append(
                {"params": self.embed.parameters(), "lr": self.lr * self.backbone_lr_ratio}
            )
        return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)
