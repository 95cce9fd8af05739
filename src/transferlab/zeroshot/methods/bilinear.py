"""Bilinear compatibility (ALE / DeViSE style) trained with cross-entropy over seen classes,
on frozen features or fine-tuning the backbone with it."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from transferlab.core.errors import ConfigError
from transferlab.zeroshot.methods.base import (
    ClassSet,
    CompatibilityMethod,
    register_method,
    train_softmax,
)


class _Compatibility(nn.Module):
    """``logits = embed(x) W s_c^T`` for fixed class semantics ``s``."""

    def __init__(self, embed: nn.Module | None, dim: int, semantics: torch.Tensor) -> None:
        super().__init__()
        self.embed = embed
        self.project = nn.Linear(dim, semantics.shape[1], bias=False)
        self.register_buffer("semantics", semantics.float())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.embed is None else F.normalize(self.embed(x), dim=1)

    def forward(self, x: torch.Tensor, semantics: torch.Tensor | None = None) -> torch.Tensor:
        s = self.semantics if semantics is None else semantics
        return self.project(self.features(x)) @ s.T


@register_method("bilinear")
class Bilinear(CompatibilityMethod):
    """Learns ``W`` of ``F(x, c) = theta(x)^T W phi(c)`` by softmax cross-entropy over the seen
    classes (Adam). With ``finetune_backbone`` the backbone ``theta`` is trained too, at
    ``lr * backbone_lr_ratio``, and the method takes preprocessed images as inputs."""

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
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.backbone = backbone if finetune_backbone else None
        self.backbone_lr_ratio = float(backbone_lr_ratio)
        self.inputs = "images" if finetune_backbone else "features"
        self.device = torch.device(device)

    def fit(self, x: torch.Tensor, y: torch.Tensor, seen: ClassSet, unseen: ClassSet) -> Bilinear:
        self.remember(seen, unseen)
        embed = copy.deepcopy(self.backbone) if self.backbone is not None else None
        dim = embed.num_features if embed is not None else x.shape[1]
        self.model = _Compatibility(embed, dim, seen.semantics).to(self.device)
        params = [{"params": self.model.project.parameters(), "lr": self.lr}]
        if embed is not None:
            params.append({"params": embed.parameters(), "lr": self.lr * self.backbone_lr_ratio})
        train_softmax(
            self.model,
            x,
            y.to(self.device),
            self.epochs,
            self.lr,
            self.weight_decay,
            self.batch_size,
            params=params,
            prepare=lambda batch: batch.to(self.device),
        )
        return self

    @torch.no_grad()
    def compatibility(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        s = semantics.to(self.device)
        return torch.cat([self.model(batch.to(self.device), s).cpu() for batch in x.split(1024)])
