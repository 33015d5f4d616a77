"""PHdim: the persistent-homology dimension of a point cloud (Schweinhart; Magai & Ayzenberg 2022).

For n i.i.d. points from a d-dimensional set, E^0_1 (the Euclidean MST length) grows like
n^((d-1)/d). Fitting ``log E = slope * log n + c`` over subsamples of several sizes gives
``PHdim = 1 / (1 - slope)``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from topo_monitor._validation import as_cloud
from topo_monitor.tda import mst
from topo_monitor.tda.mst import mst_tree, stacked_squared_distances, subcloud_mst_lengths
from topo_monitor.tda.sampling import Generatorish, as_generator, random_orders

__all__ = ["PHDimResult", "default_sizes", "ph_dimension", "ph_dimensions"]

MIN_POINTS = 20
"""Fewer points than this leave too little range of n for a meaningful fit."""


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
    reason : str or None
        Why ``value`` is NaN, or None when the fit succeeded.
    """

    value: float
    slope: float
    r2: float
    stderr: float
    sizes: np.ndarray = field(repr=False)
    energies: np.ndarray = field(repr=False)
    reason: str | None = None


def default_sizes(n: int, num: int = 10) -> np.ndarray:
    """``num`` subsample sizes evenly spaced in log n, from about n/10 (at least 10) up to n."""
    return np.array(_default_sizes(int(n), int(num)), dtype=np.int64)


@functools.lru_cache(maxsize=64)
def _default_sizes(n: int, num: int) -> tuple[int, ...]:
    """Cached: every class of every block at every epoch asks for the same few sizes."""
    low = max(10, n // 10)
    if n < low:
        return (n,)
    return tuple(np.unique(np.round(np.geomspace(low, n, num)).astype(np.int64)).tolist())


def ph_dimensions(
    clouds: Sequence[torch.Tensor | np.ndarray],
    sizes: np.ndarray | list[int] | None = None,
    n_draws: int = 3,
    generator: Generatorish = None,
    whole_lengths: Sequence[float] | None = None,
) -> list[PHDimResult]:
    """:func:`ph_dimension` of several clouds, without warnings: degenerate fits carry a ``reason``.

    All subsamples of all clouds go through one batched run of Prim's algorithm per subsample
    size, which is what makes PHdim of every class of every block cost milliseconds, not seconds.
    The clouds must share a device; they may differ in size and dimension.

    Memory is bounded as for H0: no dense matrix above ``mst.DENSE_BYTES``. The subsamples of
    small clouds are cut out of the clouds' dense squared distances, stacked at most that many
    bytes at a time; a larger cloud (over ``mst.CHUNK_ELEMENTS`` distances) gets no matrix, and its
    subsamples are given their trees from their points (:func:`~topo_monitor.tda.mst.mst_tree`:
    dense while a subsample's matrix fits, distance rows as needed above). A 30,000-point cloud
    (d = 64, float32) took 24-30 s and peaked at 1.65 GB (the whole process, on 2 busy cores;
    ``benchmarks/bench_phdim_memory.py``), where its dense matrices needed 10.5 GB.

    ``whole_lengths``, if given, is the E^0_1 of each whole cloud (the sum of its H0 death times),
    when already computed: it saves the largest tree of every fit.
    """
    if not isinstance(n_draws, int) or n_draws < 1:
        raise ValueError(f"n_draws must be a positive int, got {n_draws!r}")
    clouds = [as_cloud(c, name=f"cloud {g}") for g, c in enumerate(clouds)]
    if whole_lengths is not None and len(whole_lengths) != len(clouds):
        raise ValueError(
            f"whole_lengths must have one value per cloud ({len(clouds)}), got {len(whole_lengths)}"
        )
    plans = [_sizes_for(c.shape[0], sizes) for c in clouds]
    energies = _subsample_energies(clouds, plans, n_draws, as_generator(generator), whole_lengths)
    return [_fit(plan, e) for plan, e in zip(plans, energies, strict=True)]


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
        Random subsamples (without replacement) averaged per size; one at the full size.
    generator : torch.Generator, numpy.random.Generator or int, optional
        Randomness of the subsamples (an int is a seed; None means seed 0). Never the global RNG.

    Returns
    -------
    PHDimResult
        ``value`` is NaN, with a ``UserWarning`` naming the cause, when there are too few points,
        all points are equal, or the fitted slope is at least 1.

    Notes
    -----
    The estimate is close for low dimensions and increasingly low for high ones (measured on
    uniform cubes: about -5 % at d = 3 with 2000 points, -8 % at d = 5 with 3000): the MST length
    reaches its power law slowly as d grows.
    """
    result = ph_dimensions([X], sizes, n_draws, generator)[0]
    if result.reason is not None:
        warnings.warn(f"PHdim is NaN: {result.reason}", UserWarning, stacklevel=2)
    return result


def _sizes_for(n: int, sizes: np.ndarray | list[int] | None) -> np.ndarray:
    if sizes is None:
        return default_sizes(n)
    out = np.unique(np.asarray(sizes, dtype=np.int64))
    if out.ndim != 1 or len(out) == 0 or out.min() < 2 or out.max() > n:
        raise ValueError(f"sizes must be integers between 2 and n = {n}, got {out.tolist()}")
    return out


def _subsample_energies(
    clouds: list[torch.Tensor],
    plans: list[np.ndarray],
    n_draws: int,
    generator: torch.Generator | np.random.Generator,
    whole_lengths: Sequence[float] | None,
) -> list[np.ndarray]:
    """Mean E^0_1 over random subsamples, per cloud and size (NaN where PHdim won't be fitted).

    Every (size, draw) gets its own subsample: sharing points between sizes would correlate
    their errors and make the fitted slope noisier.
    """
    totals: list[np.ndarray] = [np.full(len(plan), math.nan) for plan in plans]
    fitted = [g for g, c in enumerate(clouds) if c.shape[0] >= MIN_POINTS and len(plans[g]) >= 3]
    if not fitted:
        return totals
    counts = np.array([clouds[g].shape[0] for g in fitted])
    members = [clouds[g] for g in fitted]
    whole, part = [], []  # (row of fitted, size index)
    for row, g in enumerate(fitted):
        for s_i, size in enumerate(plans[g]):
            (whole if size == counts[row] else part).append((row, s_i))
    if whole_lengths is None:
        rows = np.array([row for row, _ in whole], dtype=np.int64)
        lengths = _tree_lengths(members, rows, counts[rows])
    else:
        lengths = [float(whole_lengths[fitted[row]]) for row, _ in whole]
    for (row, s_i), length in zip(whole, lengths, strict=True):
        totals[fitted[row]][s_i] = length
    if part:
        rows = np.repeat([row for row, _ in part], n_draws)
        sizes = np.repeat([plans[fitted[row]][s_i] for row, s_i in part], n_draws)
        points = random_orders(counts[rows], int(sizes.max()), generator).to(members[0].device)
        lengths = _tree_lengths(members, rows, sizes, points)
        for (row, s_i), mean in zip(part, lengths.reshape(-1, n_draws).mean(axis=1), strict=True):
            totals[fitted[row]][s_i] = mean
    return totals


def _tree_lengths(
    clouds: list[torch.Tensor],
    rows: np.ndarray,
    sizes: np.ndarray,
    points: torch.Tensor | None = None,
) -> np.ndarray:
    """MST lengths of sub-clouds (``mst.subcloud_mst_lengths``' arguments, over ``clouds``),
    computed without a dense matrix above ``mst.DENSE_BYTES``.

    Small clouds (:func:`_gathered`: matrices of at most ``mst.CHUNK_ELEMENTS`` entries, and few
    points for their dimension) are stacked a group at a time (the largest first, each group's
    stacked matrix within ``mst.DENSE_BYTES``) and their sub-clouds cut out of it: one batched
    search for many sub-clouds. A larger cloud gets no matrix: its sub-clouds are taken from its
    points, a chunk at a time, and given their trees by ``mst.mst_tree``. For those, cutting
    sub-matrices out of the whole one was the slower and the larger way: at n = 16,000, d = 64,
    43 s and 3.1 GB added, against 11 s and 1.05 GB (the gather's intermediates grow beyond the
    chunk bound); at n = 3000, d = 64, 227-295 ms against 93-156.
    """
    out = np.zeros(len(rows))
    itemsize = clouds[0].element_size()
    for group in _groups([tuple(c.shape) for c in clouds], itemsize):
        mine = np.flatnonzero(np.isin(rows, group))
        if len(mine) == 0:
            continue
        cloud = clouds[group[0]]
        if not _gathered(*cloud.shape, itemsize):
            order = mine[np.argsort(-sizes[mine], kind="stable")]
            entries = mst.DENSE_BYTES // mst.search_dtype(cloud.device).itemsize
            for part in mst.chunks(sizes[order].tolist(), min(mst.CHUNK_ELEMENTS, entries)):
                members = order[part]
                subs = [
                    cloud[torch.arange(sizes[b]) if points is None else points[b, : sizes[b]]]
                    for b in members
                ]
                out[members] = mst_tree(subs)[1].sum(dim=1).cpu().numpy()
            continue
        D2 = stacked_squared_distances([clouds[g] for g in group], padding=math.inf)
        position = {g: i for i, g in enumerate(group)}
        local = np.array([position[r] for r in rows[mine].tolist()], dtype=np.int64)
        # Indices past a sub-cloud's size only pad a batch (masked to inf): keep them in range.
        picked = None if points is None else points[mine].clamp(max=D2.shape[-1] - 1)
        out[mine] = subcloud_mst_lengths(D2, local, sizes[mine], picked)
    return out


GATHER_POINTS = 600
GATHER_POINTS_PER_ROOT_DIMENSION = 115
"""A cloud of n points in d dimensions has its sub-clouds cut out of its dense matrix only up to
``n = GATHER_POINTS + GATHER_POINTS_PER_ROOT_DIMENSION * sqrt(d)`` (:func:`_gathered`)."""


def _gathered(n: int, d: int, itemsize: int) -> bool:
    """Whether a cloud's sub-clouds are cut out of its dense matrix (see :func:`_tree_lengths`).

    Cutting costs two gathers per entry of every sub-matrix whatever d, and more once the whole
    matrix outgrows the cache; computing them from the points costs a product of d per entry.
    PHdim of one cloud on 2 cores, cut against computed (ms): d = 8: 20-31 against 22 at
    n = 1000, 250-322 against 78-138 at 3000; d = 64: 83-102 against 51-82 at 2000, 227-295
    against 93-156 at 3000; d = 128: 83 against 69 at 2000, 293 against 145 at 3000; d = 256: 94
    against 135 at 2000, 323 against 230 at 3000; d = 512: 103-116 against 192-199 at 2000,
    312-357 against 300-366 at 3000, 648 against 621 at 4000. The crossing, about 1000, 1800,
    2200, 2500 and 3200 points, follows the square root of d.
    """
    small = n <= GATHER_POINTS + GATHER_POINTS_PER_ROOT_DIMENSION * math.sqrt(d)
    return small and n * n <= min(mst.CHUNK_ELEMENTS, mst.DENSE_BYTES // itemsize)


def _groups(shapes: list[tuple[int, int]], itemsize: int) -> list[list[int]]:
    """Clouds (by position, of shapes (n, d)) whose stacked dense matrices fit
    ``mst.DENSE_BYTES``, largest first; a cloud not to be gathered (:func:`_gathered`: its own
    size and dimension decide) alone in its group."""
    order = sorted(range(len(shapes)), key=lambda g: -shapes[g][0])
    out: list[list[int]] = []
    for g in order:
        largest = shapes[out[-1][0]] if out else (0, 0)
        fits = (len(out[-1]) + 1) * largest[0] ** 2 * itemsize <= mst.DENSE_BYTES if out else False
        if fits and _gathered(*largest, itemsize) and _gathered(*shapes[g], itemsize):
            out[-1].append(g)
        else:
            out.append([g])
    return out


def _fit(sizes: np.ndarray, energies: np.ndarray) -> PHDimResult:
    n = int(sizes.max())

    def degenerate(reason: str, slope: float = math.nan, r2: float = math.nan) -> PHDimResult:
        return PHDimResult(math.nan, slope, r2, math.nan, sizes, energies, reason)

    if n < MIN_POINTS:
        return degenerate(f"too few points ({n} < {MIN_POINTS})")
    if len(sizes) < 3:
        return degenerate(f"at least 3 distinct subsample sizes are needed, got {sizes.tolist()}")
    if not np.all(energies > 0):
        return degenerate("the MST length is zero: all points (of some subsample) are equal")
    slope, r2, stderr = _fit_line(np.log(sizes), np.log(energies))
    if slope >= 1:
        return degenerate(f"the fitted slope {slope:.3f} is >= 1 (no finite dimension)", slope, r2)
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
