"""The transferability scores (metrics/transferability.py) against hand-computed values on tiny
examples, and LogME against the authors' published algorithm (thuml/LogME, re-implemented here
as plainly as their numpy code) on features whose quality is known."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from threadpoolctl import threadpool_limits

from transferlab.metrics.transferability import (
    SCORES,
    h_score,
    h_score_shrinkage,
    leep,
    logme,
    logme_fit,
    nce,
)


@pytest.fixture(autouse=True)
def one_blas_thread() -> Iterator[None]:
    """On a busy 2-core machine a multi-threaded OpenBLAS SVD of 300 x 300 took 8 s."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def test_leep_by_hand() -> None:
    # joint P(y, z) = [[2, 0], [0.5, 1.5]] / 4; P(z) = [0.625, 0.375]
    # P(y | z=0) = [0.8, 0.2], P(y | z=1) = [0, 1]; the four examples get 0.8, 0.8, 1, 0.6
    theta = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    labels = np.array([0, 0, 1, 1])
    expected = (2 * math.log(0.8) + math.log(1.0) + math.log(0.6)) / 4  # -0.23928
    assert leep(theta, labels) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(-0.23928, abs=1e-5)


def test_leep_of_a_head_that_names_the_target_class_is_zero() -> None:
    theta = np.eye(3)[[0, 1, 2, 0]]
    assert leep(theta, np.array([2, 0, 1, 2])) == pytest.approx(0.0, abs=1e-12)


def test_nce_by_hand() -> None:
    # z = 0 holds y = 0, 0, 1 (H = H(2/3, 1/3)); z = 1 holds y = 1 (H = 0)
    source, target = np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])
    expected = 0.5 * math.log(2 / 3) + 0.25 * math.log(1 / 3)  # -0.47739
    assert nce(source, target) == pytest.approx(expected, abs=1e-12)
    assert nce(target, target) == pytest.approx(0.0, abs=1e-12)  # z determines y
    # through the score table: the argmax of the source head's softmax
    probabilities = np.eye(2)[source] * 0.8 + 0.1
    assert SCORES["nce"].compute(probabilities, target) == pytest.approx(expected)


def test_h_score_by_hand() -> None:
    # one feature: var(f) = 20/3, var(E[f | y]) = var([1, 1, 5, 5]) = 16/3
    features, labels = np.array([[0.0], [2.0], [4.0], [6.0]]), np.array([0, 0, 1, 1])
    assert h_score(features, labels) == pytest.approx(0.8, abs=1e-12)
    # one feature: Ledoit-Wolf has nothing to shrink towards (shrinkage 0)
    assert h_score_shrinkage(features, labels) == pytest.approx(0.8, abs=1e-12)


def test_h_score_matches_the_covariance_formula() -> None:
    """tr(pinv(cov f) cov(E[f | y])), as Bao et al. and TLlib write it, when N > D."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 60)
    features = rng.standard_normal((60, 6)) + labels[:, None] * 0.3
    means = np.stack([features[labels == c].mean(axis=0) for c in range(4)])[labels]
    expected = np.trace(
        np.linalg.pinv(np.cov(features, rowvar=False)) @ np.cov(means, rowvar=False)
    )
    assert h_score(features, labels) == pytest.approx(expected, rel=1e-9)


def _known_quality(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, features = one-hot labels + small noise (good), and pure noise (bad)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n)
    good = np.zeros((n, d))
    good[:, :5] = np.eye(5)[labels]
    good += 0.1 * rng.standard_normal((n, d))
    return labels, good, rng.standard_normal((n, d))


def test_h_score_is_constant_when_images_are_fewer_than_dimensions() -> None:
    """With N <= D + 1, tr(P_F P_Y) = C - 1 for any features of full rank: the plain H-score
    cannot tell good from bad features there; the shrunk one can."""
    labels, good, bad = _known_quality(40, 100)
    assert h_score(good, labels) == pytest.approx(4.0) == h_score(bad, labels)
    assert h_score_shrinkage(good, labels) > 2.5 > 1.5 > h_score_shrinkage(bad, labels)


def _authors_icml(f: np.ndarray, y: np.ndarray) -> float:
    """The authors' ICML 2021 LogME (``LogME._fit_icml`` / ``each_evidence``): eigenvalues
    of the D x D matrix F^T F (zeros included), lam = alpha / beta updated until it moves by
    less than 1% (at most 11 steps)."""
    fh = f.astype(np.float64)
    f = fh.T
    d, n = f.shape
    v, s, vh = np.linalg.svd(f @ fh, full_matrices=True)
    evidences = []
    for c in range(int(y.max()) + 1):
        y_ = (y == c).astype(np.float64)
        alpha, beta, lam, eps = 1.0, 1.0, 1.0, 1e-5
        tmp = vh @ (f @ y_)
        for _ in range(11):
            gamma = (s / (s + lam)).sum()
            m = v @ (tmp * beta / (alpha + beta * s))
            alpha_de = (m * m).sum()
            alpha = gamma / (alpha_de + eps)
            beta_de = ((y_ - fh @ m) ** 2).sum()
            beta = (n - gamma) / (beta_de + eps)
            new_lam = alpha / beta
            if abs(new_lam - lam) / lam < 0.01:
                break
            lam = new_lam
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * s))
            - beta / 2 * (beta_de + eps)
            - alpha / 2 * (alpha_de + eps)
            - n / 2 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def _authors_fixed_point(f: np.ndarray, y: np.ndarray, pad: bool = True) -> float:
    """The authors' fixed-point LogME (``LogME._fit_fixed_point``, their default) from a full
    SVD; ``pad``: the D - k zero eigenvalues in the log-determinant (thuml/LogME#23, PR #24;
    without it the evidence is wrong when N < D)."""
    f = f.astype(np.float64)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = (s**2).reshape(-1, 1)
    sigma_full = np.concatenate([sigma, np.zeros((d - len(sigma), 1))]) if pad else sigma
    evidences = []
    for c in range(int(y.max()) + 1):
        y_ = (y == c).astype(np.float64).reshape(-1, 1)
        x = u.T @ y_
        x2 = x**2
        res_x2 = (y_**2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * sigma_full))
            - beta / 2 * res2
            - alpha / 2 * m2
            - n / 2 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


@pytest.mark.parametrize(("n", "d"), [(200, 20), (60, 300)])
def test_logme_is_the_authors_algorithm(n: int, d: int) -> None:
    labels, good, bad = _known_quality(n, d)
    for features in (good, bad):
        ours = logme(features, labels)
        # the same fixed point, step for step
        assert ours == pytest.approx(_authors_fixed_point(features, labels), abs=1e-9)
        # the ICML iteration stops at a 1% change instead of 0.1%: the same maximum
        assert ours == pytest.approx(_authors_icml(features, labels), abs=2e-3)
    # features that are the labels plus a little noise score far above pure noise
    assert logme(good, labels) > logme(bad, labels) + 0.5
    if n < d:  # the unpadded fixed point (thuml/LogME#23) is off by (D - N) log(alpha) / 2N
        assert abs(_authors_fixed_point(bad, labels, pad=False) - logme(bad, labels)) > 0.1


def test_logme_evidence_is_the_marginal_likelihood() -> None:
    """Each class's evidence is log N(y; 0, I / beta + F F^T / alpha) / N at its alpha and
    beta (to 1e-3: the last step's m is from the previous alpha / beta, as the authors'; the
    log-determinant bug of thuml/LogME#23 would be off by 0.9 here), and no nearby (alpha,
    beta) has a marginal likelihood higher by more than 1e-3 per example: the fixed point (at
    most 11 steps, as the authors') stops near the maximum."""
    labels, good, _ = _known_quality(30, 50, seed=1)
    for c, (evidence, alpha, beta) in enumerate(logme_fit(good, labels)):
        column = (labels == c).astype(np.float64)

        def marginal(a: float, b: float, column: np.ndarray = column) -> float:
            covariance = np.eye(len(column)) / b + good @ good.T / a
            return multivariate_normal(np.zeros(len(column)), covariance).logpdf(column)

        best = marginal(alpha, beta)
        assert evidence == pytest.approx(best / len(column), abs=1e-3)
        for a, b in ((alpha * 1.2, beta), (alpha / 1.2, beta), (alpha, beta * 1.2)):
            assert (marginal(a, b) - best) / len(column) < 1e-3


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="not finite"):
        logme(np.array([[np.nan], [1.0]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="3 labels for 2 examples"):
        h_score(np.ones((2, 2)), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="summing to 1"):
        leep(np.ones((2, 2)), np.array([0, 1]))
