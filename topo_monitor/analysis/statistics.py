"""Statistics of the generalization study: correlations, linear fits with exact leave-one-out
errors, and the paired (cluster) bootstrap that says whether one predictor beats another."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from topo_monitor._validation import check, is_positive_int

__all__ = ["kendall_tau", "loo_errors", "ols", "paired_bootstrap", "pearson_r"]


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's correlation; NaN when either side is constant."""
    x, y = np.asarray(x, float) - np.mean(x), np.asarray(y, float) - np.mean(y)
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denominator if denominator > 0 else math.nan


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's τ-b (ties accounted for), O(n²)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(len(x), k=1)
    concordance = float(np.sum((dx * dy)[upper]))
    pairs_x, pairs_y = float(np.sum(dx[upper] != 0)), float(np.sum(dy[upper] != 0))
    return concordance / math.sqrt(pairs_x * pairs_y) if pairs_x and pairs_y else math.nan


def ols(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients (intercept first) and (XᵀX)⁻¹ for the prediction variance."""
    A = np.column_stack([np.ones(len(X)), X])
    gram_inv = np.linalg.pinv(A.T @ A)
    return gram_inv @ A.T @ y, gram_inv


def loo_errors(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Absolute leave-one-out errors of a linear fit (exact, via the hat matrix)."""
    A = np.column_stack([np.ones(len(X)), X])
    hat = A @ np.linalg.pinv(A.T @ A) @ A.T
    residuals = y - hat @ y
    leverage = np.clip(np.diag(hat), None, 1 - 1e-12)
    return np.abs(residuals / (1 - leverage))


def paired_bootstrap(
    errors_a: Sequence[float],
    errors_b: Sequence[float],
    n_resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
) -> tuple[float, float, float]:
    """How much lower predictor A's mean error is than B's, with a bootstrap interval.

    The runs are resampled with replacement, the same runs for both (the errors are paired:
    both predicted the same run), and the percentile interval of the mean difference is read off.
    With ``groups``, whole groups are resampled (a cluster bootstrap): runs that differ only by
    their seed are not independent evidence, and counting them as such narrows the interval.

    Parameters
    ----------
    errors_a, errors_b : sequences of float, shape (n,)
        Each predictor's error on the same n runs, e.g. ``score(...)["loo_errors"]["both"]``.
    n_resamples : int
    level : float in (0, 1)
        Coverage of the interval.
    seed : int
    groups : sequence, shape (n,), optional
        A label per run; runs with the same label are drawn together.

    Returns
    -------
    (difference, low, high) : tuple of float
        mean(B) - mean(A) (> 0: A is better) and its interval. An interval holding 0: the runs
        cannot tell the two apart. Runs of one factorial family share hyperparameters even
        across groups, so they are not independent draws: read the interval as a lower bound on
        the uncertainty.
    """
    a, b = np.asarray(errors_a, dtype=float), np.asarray(errors_b, dtype=float)
    check(
        a.shape == b.shape and a.ndim == 1 and len(a) >= 2,
        f"errors_a and errors_b must be paired 1-D sequences of >= 2 errors, got shapes "
        f"{a.shape} and {b.shape}",
    )
    check(0 < level < 1, f"level must be in (0, 1), got {level!r}")
    check(is_positive_int(n_resamples), f"n_resamples must be a positive int, got {n_resamples!r}")
    gains = b - a
    labels = np.arange(len(gains)) if groups is None else np.asarray(groups)
    check(labels.shape == gains.shape, f"groups must give one label per run, got {labels.shape}")
    _, member = np.unique(labels, return_inverse=True)
    sums = np.bincount(member, weights=gains)
    counts = np.bincount(member).astype(float)
    drawn = np.random.default_rng(seed).integers(0, len(sums), size=(n_resamples, len(sums)))
    means = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(gains.mean()), float(low), float(high)
