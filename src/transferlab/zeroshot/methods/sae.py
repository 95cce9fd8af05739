"""SAE: semantic autoencoder (Kodirov, Xiang & Gong, CVPR 2017), solved as a Sylvester equation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.linalg import solve_sylvester

from transferlab.core.errors import ConfigError
from transferlab.zeroshot.methods.base import ClassSet, CompatibilityMethod, register_method

SPACES = ("semantic", "feature")


def sae_weights(x: torch.Tensor, s: torch.Tensor, lam: float) -> torch.Tensor:
    """``W`` (``a x d``) minimising ``||X - W^T S||^2 + lam ||W X - S||^2`` for features
    ``x`` ``(N, d)`` and per-sample semantics ``s`` ``(N, a)``: the solution of
    ``(S S^T) W + W (lam X X^T) = (1 + lam) S X^T``."""
    xt, st = x.double().T.numpy(), s.double().T.numpy()
    w = solve_sylvester(st @ st.T, lam * (xt @ xt.T), (1.0 + lam) * (st @ xt.T))
    return torch.from_numpy(w).float()


@register_method("sae")
class SAE(CompatibilityMethod):
    """Encoder ``W`` maps features to semantics, its transpose decodes semantics to features.
    ``space=semantic`` compares ``W x`` with the class semantics; ``space=feature`` compares
    ``x`` with the decoded class prototypes ``W^T s`` (cosine similarity in both)."""

    def __init__(self, lam: float = 1.0, space: str = "semantic") -> None:
        if space not in SPACES:
            raise ConfigError(f"sae space={space!r} is invalid; use {' or '.join(SPACES)}")
        self.lam, self.space = float(lam), space

    def fit(self, x: torch.Tensor, y: torch.Tensor, seen: ClassSet, unseen: ClassSet) -> SAE:
        self.remember(seen, unseen)
        self.weights = sae_weights(x, seen.semantics[y], self.lam)
        return self

    def compatibility(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        if self.space == "semantic":
            return F.normalize(x.float() @ self.weights.T, dim=1) @ F.normalize(semantics, dim=1).T
        prototypes = semantics @ self.weights
        return F.normalize(x.float(), dim=1) @ F.normalize(prototypes, dim=1).T
