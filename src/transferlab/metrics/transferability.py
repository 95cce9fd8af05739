"""Transferability scores: how well a source's frozen features (or its classifier's outputs) on
the labelled target training images predict the target labels, before any fine-tuning
(docs/ranking.md). Higher is better for every score.

- :func:`logme`: LogME (You et al., ICML 2021), the log maximum evidence of a Bayesian linear
  model on the features, maximised by the authors' fixed-point iteration (their
  ``_fit_fixed_point``, with the log-determinant over all D eigenvalues, thuml/LogME#23).
- :func:`leep`: LEEP (Nguyen et al., ICML 2020), from the source head's softmax outputs.
- :func:`nce`: NCE (Tran et al., ICCV 2019), from the source head's argmax labels.
- :func:`h_score`: H-score (Bao et al., ICIP 2019); :func:`h_score_shrinkage` the same with a
  Ledoit-Wolf shrunk feature covariance (Ibrahim et al., ICLR 2023), which stays informative
  when there are fewer images than feature dimensions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# the fixed point: at most this many updates of (alpha, beta), stopped when alpha / beta moves
# by less than LOGME_TOL (relative); the authors' settings
LOGME_MAX_ITER = 11
LOGME_TOL = 1e-3
LOGME_EPS = 1e-5


def _labels(labels: ArrayLike, n: int) -> tuple[np.ndarray, int]:
    """Integer labels ``(n,)`` in ``[0, C)`` and ``C``."""
    y = np.asarray(labels).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{len(y)} labels for {n} examples")
    if len(y) == 0 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError("labels must be non-negative integers, at least one")
    return y.astype(np.int64), int(y.max()) + 1


def _matrix(values: ArrayLike, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"{what} must be a non-empty (N, D) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} are not finite")
    return x


def left_singular(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The left singular vectors ``U`` ``(N, r)`` and squared singular values ``s**2`` of
    ``f`` (``N x D``) above a rank cut-off, from the eigen-decomposition of the smaller Gram
    matrix (``f f^T`` or ``f^T f``, as the authors' ``truncated_svd``): much faster than an
    SVD when N and D differ. Directions with ``s**2 <= max(s**2) * max(N, D) * eps`` count as
    zero."""
    n, d = f.shape
    gram = f @ f.T if n <= d else f.T @ f
    eigen, vectors = np.linalg.eigh(gram)
    keep = eigen > max(eigen.max(), 0.0) * max(n, d) * np.finfo(np.float64).eps
    eigen, vectors = eigen[keep], vectors[:, keep]
    if n <= d:
        return vectors, eigen
    return f @ vectors / np.sqrt(eigen), eigen


def _class_evidence(
    x2: np.ndarray, rest: float, sigma: np.ndarray, n: int, d: int
) -> tuple[float, float, float]:
    """The maximum log evidence per example of one target column, alpha and beta: ``x2`` its
    squared coordinates in the left singular basis, ``rest`` its squared norm outside that
    basis, ``sigma`` the squared singular values (the other ``d - len(sigma)`` are zero,
    and count in the log-determinant: thuml/LogME#23)."""
    alpha, beta = 1.0, 1.0
    for _ in range(LOGME_MAX_ITER):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        m2 = float((sigma * x2 / (sigma + t) ** 2).sum())  # |m|^2
        res2 = float((x2 * (t / (sigma + t)) ** 2).sum()) + rest  # |y - F m|^2
        alpha = gamma / (m2 + LOGME_EPS)
        beta = (n - gamma) / (res2 + LOGME_EPS)
        if abs(alpha / beta - t) / t <= LOGME_TOL:
            break
    log_det = np.log(alpha + beta * sigma).sum() + (d - len(sigma)) * np.log(alpha)
    evidence = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - log_det / 2
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * np.log(2 * np.pi)
    )
    return float(evidence / n), alpha, beta


def logme_fit(features: ArrayLike, labels: ArrayLike) -> list[tuple[float, float, float]]:
    """Per class of ``labels``: the maximum log evidence per example of a linear model with
    a Gaussian prior (precision alpha) and Gaussian noise (precision beta) fitting the
    class's one-hot column from ``features``, and that alpha and beta."""
    f = _matrix(features, "features")
    n, d = f.shape
    y, classes = _labels(labels, n)
    u, sigma = left_singular(f)
    evidences = []
    for c in range(classes):
        column = (y == c).astype(np.float64)
        x = u.T @ column
        x2 = x**2
        evidences.append(_class_evidence(x2, float(column @ column - x2.sum()), sigma, n, d))
    return evidences


def logme(features: ArrayLike, labels: ArrayLike) -> float:
    """LogME of ``features`` ``(N, D)`` for integer ``labels`` ``(N,)``: the mean over
    classes of :func:`logme_fit`'s maximum log evidence per example."""
    return float(np.mean([evidence for evidence, _, _ in logme_fit(features, labels)]))


def _softmax_rows(probabilities: ArrayLike) -> np.ndarray:
    p = _matrix(probabilities, "source probabilities")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("source probabilities must be non-negative rows summing to 1")
    return p


def _conditional(joint: np.ndarray) -> np.ndarray:
    """``P(y | z)`` ``(C_t, C_s)`` from a joint ``P(y, z)``; zero where ``P(z) = 0``."""
    p_z = joint.sum(axis=0, keepdims=True)
    return np.divide(joint, p_z, out=np.zeros_like(joint), where=p_z > 0)


def leep(source_probabilities: ArrayLike, labels: ArrayLike) -> float:
    """LEEP: the mean log-likelihood of the target labels under the "expected empirical
    predictor" ``sum_z P(y | z) theta(x)_z``, ``theta(x)`` the source head's softmax
    ``(N, C_s)`` and ``P(y | z)`` estimated from the soft joint ``sum_i theta(x_i)_z [y_i = y]``."""
    theta = _softmax_rows(source_probabilities)
    y, classes = _labels(labels, len(theta))
    joint = np.zeros((classes, theta.shape[1]))
    np.add.at(joint, y, theta / len(theta))
    predicted = theta @ _conditional(joint).T  # (N, C_t)
    return float(np.mean(np.log(predicted[np.arange(len(y)), y])))


def nce(source_labels: ArrayLike, labels: ArrayLike) -> float:
    """NCE: the negative conditional entropy ``-H(Y | Z)`` of the target labels given the
    source head's predicted labels ``z`` (integers), from their empirical joint."""
    y, classes = _labels(labels, len(np.asarray(labels).reshape(-1)))
    z, source_classes = _labels(source_labels, len(y))
    joint = np.zeros((classes, source_classes))
    np.add.at(joint, (y, z), 1.0 / len(y))
    conditional = _conditional(joint)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log(conditional[nonzero])).sum())


def _class_spectrum(
    features: ArrayLike, labels: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The centred features ``F``, its squared singular values ``s**2``
    (:func:`left_singular`), and ``q_i = u_i^T P u_i``, ``u_i`` the left singular vectors and
    ``P`` the projection onto the class indicators (``P F`` is ``E[f | y]`` per example)."""
    f = _matrix(features, "features")
    y, classes = _labels(labels, len(f))
    f = f - f.mean(axis=0)
    u, sigma = left_singular(f)
    sums = np.zeros((classes, u.shape[1]))
    np.add.at(sums, y, u)
    counts = np.maximum(np.bincount(y, minlength=classes), 1)
    return f, sigma, (sums**2 / counts[:, None]).sum(axis=0)


def h_score(features: ArrayLike, labels: ArrayLike) -> float:
    """H-score ``tr(cov(f)^+ cov(E[f | y]))`` (pseudo-inverse),
    computed as ``sum_i q_i`` in the singular basis of the centred features (directions
    below the rank cut-off of :func:`left_singular` count as null). With N <= D + 1
    images of full rank it is ``C - 1`` for any features: see :func:`h_score_shrinkage`."""
    return float(_class_spectrum(features, labels)[2].sum())


def h_score_shrinkage(features: ArrayLike, labels: ArrayLike) -> float:
    """H-score with the feature covariance ``S`` shrunk towards ``mu I`` (``mu`` its mean
    eigenvalue) by the Ledoit-Wolf amount ``a``:
    ``tr(((1 - a) S + a mu I)^-1 (1 - a) cov(E[f | y]))``."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    f, sigma, q = _class_spectrum(features, labels)
    n, d = f.shape
    eigen = sigma / n  # the nonzero eigenvalues of S = F^T F / n
    mu = eigen.sum() / d
    if mu == 0:
        return 0.0
    a = float(ledoit_wolf_shrinkage(f, assume_centered=True))
    return float(((1 - a) * eigen * q / ((1 - a) * eigen + a * mu)).sum())


@dataclass(frozen=True)
class Score:
    """A transferability score: its name in tables, and whether it reads the features or the
    source head's softmax outputs (``needs_head``)."""

    title: str
    needs_head: bool
    compute: Callable[[np.ndarray, np.ndarray], float]


def _nce_from_probabilities(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return nce(np.asarray(probabilities).argmax(axis=1), labels)


SCORES: dict[str, Score] = {
    "logme": Score("LogME", False, logme),
    "leep": Score("LEEP", True, leep),
    "nce": Score("NCE", True, _nce_from_probabilities),
    "hscore": Score("H-score", False, h_score),
    "hscore_shrinkage": Score("H-score (shrunk)", False, h_score_shrinkage),
}
