"""PHdim: the persistent-homology dimension of a point cloud (Schweinhart; Magai & Ayzenberg 2022).

For n i.i.d. points from a d-dimensional set, E^0_1 (the Euclidean MST length) grows like
n^((d-1)/d). Fitting ``log E = slope * log n + c`` over subsamples of several sizes gives
``PHdim = 1 / (1 - slope)``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from topo_monitor._validation import Generatorish, as_cloud, as_generator, subsample_indices
from topo_monitor.persistence import prim_mst, squared_distances

__all__ = ["PHDimResult", "default_sizes", "ph_dimension", "subsample_energies"]

MIN_POINTS = 20
"""Fewer points than this leave too little range of n for a meaningful fit."""

CHUNK_ELEMENTS = 2**24
"""Subsamples are run through Prim together in chunks of at most this many distance entries."""


@dataclass(frozen=True)
class PHDimResult:
    """Outcome of a PHdim fit.

    Attributes
    ----------
    value : float
        PHdim = 1 / (1 - slope); NaN when the fit is degenerate (a warning says why).
    slope : float
        Least-squares slope of log E^0_1 against log n.
    r2 : float
        Coefficient of determination of that fit: close to 1 when E follows a power law.
    stderr : float
        Standard error of the slope.
    sizes : numpy.ndarray, shape (k,)
        Subsample sizes n_1 < ... < n_k.
    energies : numpy.ndarray, shape (k,)
        Mean E^0_1 over the draws at each size.
    """

    value: float
    slope: float
    r2: float
    stderr: float
    sizes: np.ndarray = field(repr=False)
    energies: np.ndarray = field(repr=False)


def default_sizes(n: int, num: int = 10) -> np.ndarray:
    """``num`` subsample sizes evenly spaced in log n, from about n/10 (at least 10) up to n."""
    low = max(10, n // 10)
    if n < low:
        return np.array([n], dtype=np.int64)
    return np.unique(np.round(np.geomspace(low, n, num)).astype(np.int64))


def subsample_energies(
    X: torch.Tensor | np.ndarray,
    sizes: np.ndarray,
    n_draws: int = 3,
    generator: Generatorish = None,
) -> np.ndarray:
    """E^0_1 of random subsamples of X, for every size and draw.

    Parameters
    ----------
    X : array-like, shape (n, d)
    sizes : array-like of int, shape (k,)
        Each at most n.
    n_draws : int
        Subsamples per size (drawn without replacement). At the full size a single draw is used,
        since every draw is the whole cloud.

    Returns
    -------
    numpy.ndarray, shape (k,)
        The mean E^0_1 over the draws of each size.

    All subsamples share one distance matrix, and all their minimum spanning trees are found in one
    batched run of Prim's algorithm (padding vertices are kept apart at infinite distance).
    """
    X = as_cloud(X)
    n = X.shape[0]
    sizes = np.asarray(sizes, dtype=np.int64)
    D2 = squared_distances(X)
    generator = as_generator(generator)
    draws = [
        (s_i, int(size))
        for s_i, size in enumerate(sizes)
        for _ in range(1 if size == n else n_draws)
    ]
    draws.sort(key=lambda draw: -draw[1])
    totals = np.empty(len(draws))
    start = 0
    while start < len(draws):
        m = draws[start][1]  # the chunk's largest size; smaller clouds are padded up to it
        stop = start + max(1, min(len(draws) - start, CHUNK_ELEMENTS // (m * m)))
        idx = torch.full((stop - start, m), -1, dtype=torch.long)
        for row, (_, size) in enumerate(draws[start:stop]):
            idx[row, :size] = subsample_indices(n, size, generator)
        totals[start:stop] = _mst_lengths(D2, idx.to(X.device))
        start = stop
    owners = np.array([s_i for s_i, _ in draws])
    return np.array([totals[owners == s_i].mean() for s_i in range(len(sizes))])


def _mst_lengths(D2: torch.Tensor, idx: torch.Tensor) -> np.ndarray:
    """MST lengths of the sub-clouds ``idx`` (B, m) of a cloud with squared distances D2.

    Entries -1 of ``idx`` are padding.
    """
    pad = idx < 0
    safe = idx.clamp(min=0)
    sub = D2[safe[:, :, None], safe[:, None, :]]
    sub.masked_fill_(pad[:, :, None] | pad[:, None, :], math.inf)
    _, weights = prim_mst(sub)
    return weights.nan_to_num(posinf=0.0).sqrt().sum(dim=1).cpu().numpy()


def ph_dimension(
    X: torch.Tensor | np.ndarray,
    sizes: np.ndarray | list[int] | None = None,
    n_draws: int = 3,
    generator: Generatorish = None,
) -> PHDimResult:
    """Estimate the intrinsic dimension of a cloud from the growth of its MST length.

    Parameters
    ----------
    X : torch.Tensor or numpy.ndarray, shape (n, d)
        At least 20 points.
    sizes : array-like of int, optional
        Subsample sizes, each between 2 and n. Default: 10 sizes evenly spaced in log n from
        n/10 (at least 10) to n.
    n_draws : int, default 3
        Random subsamples averaged per size.
    generator : torch.Generator, numpy.random.Generator or int, optional
        Randomness of the subsamples (an int is a seed; None means seed 0). Never the global RNG.

    Returns
    -------
    PHDimResult
        ``value`` is NaN, with a ``UserWarning`` naming the cause, when there are too few points,
        all points are equal, or the fitted slope is at least 1.

    Notes
    -----
    The estimate is close for low dimensions and increasingly low for high ones (about -10 % at
    d = 8 and -20 % at d = 16-24 on uniform cubes): MST growth needs exponentially many points
    to reach its asymptotic regime as d grows.
    """
    X = as_cloud(X)
    n = X.shape[0]
    if not isinstance(n_draws, int) or n_draws < 1:
        raise ValueError(f"n_draws must be a positive int, got {n_draws!r}")
    if sizes is None:
        sizes = default_sizes(n)
    else:
        sizes = np.unique(np.asarray(sizes, dtype=np.int64))
        if sizes.ndim != 1 or len(sizes) == 0 or sizes.min() < 2 or sizes.max() > n:
            raise ValueError(f"sizes must be integers between 2 and n = {n}, got {sizes.tolist()}")

    def degenerate(reason: str, slope: float = math.nan, r2: float = math.nan) -> PHDimResult:
        warnings.warn(f"PHdim is NaN: {reason}", UserWarning, stacklevel=3)
        return PHDimResult(math.nan, slope, r2, math.nan, sizes, energies)

    energies = np.full(len(sizes), math.nan)
    if n < MIN_POINTS:
        return degenerate(f"too few points ({n} < {MIN_POINTS})")
    if len(sizes) < 3:
        return degenerate(f"at least 3 distinct subsample sizes are needed, got {sizes.tolist()}")
    energies = subsample_energies(X, sizes, n_draws, generator)
    if not np.all(energies > 0):
        return degenerate("the MST length is zero: all points (of some subsample) are equal")
    slope, r2, stderr = _fit_line(np.log(sizes), np.log(energies))
    if slope >= 1:
        return degenerate(f"the fitted slope {slope:.3f} is >= 1", slope, r2)
    return PHDimResult(1.0 / (1.0 - slope), slope, r2, stderr, sizes, energies)


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares slope of y on x, with R² and the slope's standard error."""
    xc, yc = x - x.mean(), y - y.mean()
    sxx = float(xc @ xc)
    slope = float(xc @ yc) / sxx
    resid = yc - slope * xc
    ss_res, ss_tot = float(resid @ resid), float(yc @ yc)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    stderr = math.sqrt(ss_res / (len(x) - 2) / sxx) if len(x) > 2 else math.nan
    return slope, r2, stderr
