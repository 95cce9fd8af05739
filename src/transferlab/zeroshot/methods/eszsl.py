"""ESZSL: embarrassingly simple zero-shot learning (Romera-Paredes & Torr, ICML 2015)."""

from __future__ import annotations

import torch

from transferlab.zeroshot.methods.base import register_method
from transferlab.zeroshot.methods.module import ClosedFormModule, SufficientStats


def eszsl_solve(
    stats: SufficientStats, semantics: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """The closed form ``V = (X^T X + gamma I)^-1 X^T Y S (S^T S + lam I)^-1`` (``d x a``), with
    ``Y`` in {-1, 1} (``+1`` at each sample's class) and ``S`` the ``(K, a)`` class semantics.
    ``X^T Y = 2 (class sums)^T - (column sums) 1^T`` comes from the statistics."""
    s64 = semantics.double()
    d, a = stats.xtx.shape[0], s64.shape[1]
    xty = 2.0 * stats.class_sums.T - stats.class_sums.sum(dim=0)[:, None]
    left = torch.linalg.solve(stats.xtx + gamma * torch.eye(d, dtype=torch.float64), xty)
    right = torch.linalg.solve(s64.T @ s64 + lam * torch.eye(a, dtype=torch.float64), s64.T).T
    return (left @ right).float()


def eszsl_weights(
    x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """:func:`eszsl_solve` of inputs ``x`` with class columns ``y``."""
    return eszsl_solve(SufficientStats.of(x, y, len(semantics)), semantics, gamma, lam)


@register_method("eszsl")
class ESZSL(ClosedFormModule):
    """Bilinear compatibility ``(x - m)^T V s`` with ``V`` in closed form; ``gamma`` regularises
    the feature side, ``lam`` the semantic side. ``center`` (default): ``m`` is the mean training
    feature (else 0, the paper's form). The model has no bias, and pooled ReLU features share a
    large mean component, whose image ``m V`` then adds one class-dependent offset to every
    score: on digits (5 images per class) it made one unseen class win nearly every image
    (docs/zeroshot.md, "ESZSL on digits")."""

    def __init__(
        self, gamma: float = 1.0, lam: float = 1.0, center: bool = True, device: str = "cpu"
    ) -> None:
        super().__init__(device)
        self.gamma, self.lam, self.center = float(gamma), float(lam), bool(center)

    def solve(self, stats: SufficientStats) -> torch.Tensor:
        mean = stats.mean() if self.center else torch.zeros(len(stats.xtx), dtype=torch.float64)
        self.register_buffer("mean", mean.float().to(self.device))
        stats = stats.centred() if self.center else stats
        return eszsl_solve(stats, self.seen_semantics.cpu(), self.gamma, self.lam)

    def compatibility(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) @ self.weights @ semantics.T
