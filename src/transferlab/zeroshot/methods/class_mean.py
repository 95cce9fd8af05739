"""Nearest class mean in a shared space: unseen class prototypes predicted from semantics
(Mensink et al., "Distance-based image classification: generalizing to new classes at
near-zero cost", TPAMI 2013; Changpinyo et al., "Predicting visual exemplars of unseen
classes for zero-shot learning", ICCV 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from transferlab.core.errors import ConfigError
from transferlab.zeroshot.methods.base import register_method
from transferlab.zeroshot.methods.module import ClosedFormModule, SufficientStats

SPACES = ("feature", "semantic")


def ridge(inputs: torch.Tensor, targets: torch.Tensor, lam: float) -> torch.Tensor:
    """``(A^T A + lam I)^-1 A^T B`` in float64: the ridge map from ``inputs`` to ``targets``."""
    a = inputs.double()
    eye = torch.eye(a.shape[1], dtype=torch.float64)
    return torch.linalg.solve(a.T @ a + lam * eye, a.T @ targets.double())


@register_method("class_mean")
class ClassMean(ClosedFormModule):
    """Cosine nearest class mean. ``space=feature`` (visual exemplars, Changpinyo et al.):
    the seen classes' mean features are regressed on their semantics (ridge, ``lam``); a class's
    prototype is its predicted mean ``s W``, for seen classes too, so seen and unseen are scored
    alike. ``space=semantic``: features are regressed onto their class's semantics (ridge over
    images) and compared with the class semantic vectors."""

    default_grid = {"lam": [0.01, 0.1, 1.0, 10.0], "space": ["feature", "semantic"]}

    def __init__(self, lam: float = 1.0, space: str = "feature", device: str = "cpu") -> None:
        if space not in SPACES:
            raise ConfigError(f"class_mean space={space!r} is invalid; use {' or '.join(SPACES)}")
        super().__init__(device)
        self.lam, self.space = float(lam), space

    def solve(self, stats: SufficientStats) -> torch.Tensor:
        s = self.seen_semantics.cpu().double()
        if self.space == "feature":  # (a, d): semantics -> class mean feature
            return ridge(s, stats.class_means(), self.lam)
        eye = torch.eye(len(stats.xtx), dtype=torch.float64)  # (d, a): feature -> semantics
        return torch.linalg.solve(stats.xtx + self.lam * eye, stats.class_sums.T @ s)

    def compatibility(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        if self.space == "feature":
            return F.normalize(x.float(), dim=1) @ F.normalize(semantics @ self.weights, dim=1).T
        return F.normalize(x.float() @ self.weights, dim=1) @ F.normalize(semantics, dim=1).T
