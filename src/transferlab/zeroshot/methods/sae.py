"""SAE: semantic autoencoder (Kodirov, Xiang & Gong, CVPR 2017), solved as a Sylvester equation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.linalg import solve_sylvester

from transferlab.core.errors import ConfigError
from transferlab.zeroshot.methods.base import register_method
from transferlab.zeroshot.methods.module import ClosedFormModule, SufficientStats

SPACES = ("semantic", "feature")


def sae_solve(sts: torch.Tensor, xtx: torch.Tensor, stx: torch.Tensor, lam: float) -> torch.Tensor:
    """``W`` (``a x d``) from the Gram matrices ``S S^T``, ``X X^T`` and ``S X^T`` (samples as
    columns): the solution of ``(S S^T) W + W (lam X X^T) = (1 + lam) S X^T``."""
    a, b = sts.double().numpy(), lam * xtx.double().numpy()
    w = solve_sylvester(a, b, (1.0 + lam) * stx.double().numpy())
    return torch.from_numpy(w).float()


def sae_weights(x: torch.Tensor, s: torch.Tensor, lam: float) -> torch.Tensor:
    """``W`` minimising ``||X - W^T S||^2 + lam ||W X - S||^2`` for features ``x`` ``(N, d)``
    and per-sample semantics ``s`` ``(N, a)``."""
    x64, s64 = x.double(), s.double()
    return sae_solve(s64.T @ s64, x64.T @ x64, s64.T @ x64, lam)


@register_method("sae")
class SAE(ClosedFormModule):
    """Encoder ``W`` maps features to semantics, its transpose decodes semantics to features.
    ``space=semantic`` compares ``W x`` with the class semantics; ``space=feature`` compares
    ``x`` with the decoded class prototypes ``W^T s`` (cosine similarity in both)."""

    def __init__(self, lam: float = 1.0, space: str = "semantic", device: str = "cpu") -> None:
        if space not in SPACES:
            raise ConfigError(f"sae space={space!r} is invalid; use {' or '.join(SPACES)}")
        super().__init__(device)
        self.lam, self.space = float(lam), space

    def solve(self, stats: SufficientStats) -> torch.Tensor:
        s = self.seen_semantics.cpu().double()
        sts = s.T @ (stats.counts[:, None] * s)  # sum over samples of s_y s_y^T
        return sae_solve(sts, stats.xtx, s.T @ stats.class_sums, self.lam)

    def compatibility(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        if self.space == "semantic":
            return F.normalize(x.float() @ self.weights.T, dim=1) @ F.normalize(semantics, dim=1).T
        prototypes = semantics @ self.weights
        return F.normalize(x.float(), dim=1) @ F.normalize(prototypes, dim=1).T
