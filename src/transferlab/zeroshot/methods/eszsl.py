"""ESZSL: embarrassingly simple zero-shot learning (Romera-Paredes & Torr, ICML 2015)."""

from __future__ import annotations

import torch

from transferlab.zeroshot.methods.base import ClassSet, CompatibilityMethod, register_method


def eszsl_weights(
    x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """The closed form ``V = (X^T X + gamma I)^-1 X^T Y S (S^T S + lam I)^-1`` (``d x a``), with
    ``Y`` in {-1, 1} (``+1`` at each sample's class) and ``S`` the ``(K, a)`` class semantics."""
    x64, s64 = x.double(), semantics.double()
    targets = -torch.ones(len(x), len(semantics), dtype=torch.float64)
    targets[torch.arange(len(x)), y] = 1.0
    d, a = x64.shape[1], s64.shape[1]
    left = torch.linalg.solve(x64.T @ x64 + gamma * torch.eye(d, dtype=torch.float64), x64.T)
    right = torch.linalg.solve(s64.T @ s64 + lam * torch.eye(a, dtype=torch.float64), s64.T).T
    return (left @ targets @ right).float()


@register_method("eszsl")
class ESZSL(CompatibilityMethod):
    """Bilinear compatibility ``x^T V s`` with ``V`` in closed form; ``gamma`` regularises the
    feature side, ``lam`` the semantic side."""

    def __init__(self, gamma: float = 1.0, lam: float = 1.0) -> None:
        self.gamma, self.lam = float(gamma), float(lam)

    def fit(self, x: torch.Tensor, y: torch.Tensor, seen: ClassSet, unseen: ClassSet) -> ESZSL:
        self.remember(seen, unseen)
        self.weights = eszsl_weights(x, y, seen.semantics, self.gamma, self.lam)
        return self

    def compatibility(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        return x.float() @ self.weights @ semantics.T
