"""Zero-shot metrics: per-class mean accuracy, ZSL accuracy, generalized ZSL seen/unseen/H,
and calibrated stacking (Chao et al., 2016: subtract a constant from seen-class scores)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def per_class_mean_accuracy(labels: torch.Tensor, predictions: torch.Tensor) -> float:
    """Accuracy averaged over the classes present in ``labels`` (balanced accuracy)."""
    y, p = np.asarray(labels), np.asarray(predictions)
    if y.size == 0:
        return float("nan")
    # the mean recall over the true classes (sklearn's balanced_accuracy_score warns when
    # predictions fall in classes absent from y, which is normal here)
    recalls = [float(np.mean(p[y == c] == c)) for c in np.unique(y)]
    return float(np.mean(recalls))


def harmonic_mean(seen: float, unseen: float) -> float:
    """H = 2 s u / (s + u) (0 when both are 0)."""
    return 0.0 if seen + unseen == 0 else 2.0 * seen * unseen / (seen + unseen)


def calibrate(scores: torch.Tensor, num_seen: int, gamma: float) -> torch.Tensor:
    """Calibrated stacking: ``gamma`` subtracted from the scores of the first ``num_seen``
    columns (the seen classes)."""
    out = scores.clone()
    out[:, :num_seen] -= gamma
    return out


def zsl_accuracy(unseen_scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Per-class mean accuracy of unseen-class images classified among the unseen classes only
    (``labels`` index the columns of ``unseen_scores``)."""
    return per_class_mean_accuracy(labels, unseen_scores.argmax(dim=1))


def gzsl_metrics(
    scores: torch.Tensor, labels: torch.Tensor, num_seen: int, gamma: float = 0.0
) -> dict[str, float]:
    """Generalized ZSL: every test image classified among seen and unseen classes (columns:
    seen first, then unseen; ``labels`` index the columns). Seen / unseen accuracy are the
    per-class mean accuracies on the images of seen / unseen classes; H their harmonic mean."""
    predictions = calibrate(scores, num_seen, gamma).argmax(dim=1)
    is_seen = labels < num_seen
    seen = per_class_mean_accuracy(labels[is_seen], predictions[is_seen])
    unseen = per_class_mean_accuracy(labels[~is_seen], predictions[~is_seen])
    return {"gzsl_seen": seen, "gzsl_unseen": unseen, "gzsl_h": harmonic_mean(seen, unseen)}


def choose_gamma(
    scores: torch.Tensor, labels: torch.Tensor, num_seen: int, grid: Sequence[float]
) -> float:
    """The calibration constant of ``grid`` with the best H (the first one on ties)."""
    best, best_h = float(grid[0]), -1.0
    for gamma in grid:
        h = gzsl_metrics(scores, labels, num_seen, float(gamma))["gzsl_h"]
        if h > best_h + 1e-12:
            best, best_h = float(gamma), h
    return best


__all__ = [
    "calibrate",
    "choose_gamma",
    "gzsl_metrics",
    "harmonic_mean",
    "per_class_mean_accuracy",
    "zsl_accuracy",
]
