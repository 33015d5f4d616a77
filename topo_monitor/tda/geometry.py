"""Geometry of labelled point clouds: the baselines a topological measure must beat.

Davies–Bouldin index, within-class variability collapse NC1 and effective rank of a block's
cloud (the ``"geometry"`` metric group), closed forms on torch tensors.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["GEOMETRY", "davies_bouldin", "effective_rank", "neural_collapse_nc1"]

GEOMETRY = ("davies_bouldin", "nc1", "effective_rank")
"""The representation-geometry baselines of one block (the ``"geometry"`` metric group)."""


def _by_class(
    X: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The class index of every row (n,), the class means (k, d) and the rows minus their
    class's mean (n, d), in float64 on the CPU."""
    classes, index = torch.unique(labels.cpu(), return_inverse=True)
    X = X.detach().double().cpu()
    means = torch.zeros(len(classes), X.shape[1], dtype=torch.float64)
    means.index_add_(0, index, X)
    means = means / torch.bincount(index, minlength=len(classes))[:, None]
    return index, means, X - means[index]


def davies_bouldin(X: torch.Tensor, labels: torch.Tensor) -> float:
    """Davies–Bouldin index of the classes in a representation (lower: tighter, farther apart).

    The mean over classes of max over other classes of (s_i + s_j) / |μ_i − μ_j|, s the mean
    distance of a class's points to its mean: scikit-learn's ``davies_bouldin_score`` with the
    labels as clusters. The PGDL winners' measure on intermediate representations.

    Parameters
    ----------
    X : torch.Tensor, shape (n, d)
    labels : torch.Tensor, shape (n,)

    Returns
    -------
    float
        NaN with fewer than two classes. Coinciding class means are ignored, as scikit-learn
        does.
    """
    index, means, centred = _by_class(X, labels)
    if len(means) < 2:
        return math.nan
    spread = centred.norm(dim=1)
    s = torch.zeros(len(means), dtype=torch.float64).index_add_(0, index, spread)
    s = s / torch.bincount(index, minlength=len(means))
    separation = torch.cdist(means, means, compute_mode="donot_use_mm_for_euclid_dist")
    separation[separation == 0] = math.inf
    ratio = ((s[:, None] + s[None, :]) / separation).numpy()
    np.fill_diagonal(ratio, -np.inf)
    return float(np.mean(ratio.max(axis=1)))


def neural_collapse_nc1(X: torch.Tensor, labels: torch.Tensor) -> float:
    """Within-class variability relative to between-class spread, tr(Σ_W Σ_B⁺) / K
    (Papyan, Han & Donoho 2020): it falls toward 0 as each class collapses to its mean.

    Parameters
    ----------
    X : torch.Tensor, shape (n, d)
    labels : torch.Tensor, shape (n,)

    Returns
    -------
    float
        NaN with fewer than two classes.
    """
    _, means, centred = _by_class(X, labels)
    K = len(means)
    if K < 2:
        return math.nan
    within = centred.T @ centred / len(centred)
    between_centred = means - means.mean(dim=0)
    between = between_centred.T @ between_centred / K
    return float(torch.trace(within @ torch.linalg.pinv(between, hermitian=True)) / K)


def effective_rank(X: torch.Tensor) -> float:
    """Effective rank exp(H(σ / Σσ)) of the centred representation (Roy & Vetterli 2007):
    between 1 and min(n, d); k for a cloud spread evenly over k orthogonal directions.

    Parameters
    ----------
    X : torch.Tensor, shape (n, d)

    Returns
    -------
    float
        NaN for a cloud collapsed to one point.
    """
    X = X.detach().double().cpu()
    sigma = torch.linalg.svdvals(X - X.mean(dim=0))
    total = sigma.sum()
    if not total > 0:
        return math.nan
    p = sigma[sigma > 0] / total
    return float(torch.exp(-(p * p.log()).sum()))
