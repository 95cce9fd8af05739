"""Confidence-thresholded pseudo-labels (Lee 2013; FixMatch's masked form, Sohn et al. 2020),
shared by semi-supervised learning and domain adaptation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pseudo_label_loss(
    probabilities: torch.Tensor, logits: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``logits`` against the argmax of ``probabilities`` (the hard
    pseudo-labels, no gradient) where that max is at least ``threshold``, averaged over all
    images (FixMatch's normalisation); and the mask (1.0 where a pseudo-label was used)."""
    confidence, pseudo = probabilities.detach().max(dim=1)
    mask = (confidence >= threshold).float()
    per_image = F.cross_entropy(logits, pseudo, reduction="none")
    return (per_image * mask).sum() / max(len(logits), 1), mask
