"""Persistent homology of point clouds under the Vietoris–Rips filtration.

Conventions (those of gudhi's ``RipsComplex`` and of ripser): the metric is Euclidean and the edge
``{x, y}`` enters the filtration at ``|x - y|``, so every number here is a *diameter*, not a radius.
The reference code of Magai & Ayzenberg (2022) multiplies each lifespan by 0.5; their E values are
half of ours on the same cloud.

H0 needs no simplicial complex: every H0 bar is born at 0 and dies at the length of an edge of a
Euclidean minimum spanning tree, so the H0 barcode is computed exactly as an MST (Prim's algorithm
on the dense distance matrix, in torch, on the cloud's device). Higher dimensions go through gudhi.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from topo_monitor._validation import as_cloud, as_diagram, as_generator, subsample_indices

CHUNK_ELEMENTS = 2**24
"""Batched Prim runs are split so that one run holds at most this many distance entries."""

__all__ = [
    "barcode",
    "cloud_scale",
    "h0_death_times",
    "h0_death_times_many",
    "mean_lifespan",
    "prim_mst",
    "squared_distances",
    "total_persistence",
]


def work_dtype(device: torch.device) -> torch.dtype:
    """float64 wherever the device has it: the H0 values must match gudhi's double precision."""
    return torch.float32 if device.type == "mps" else torch.float64


def squared_distances(X: torch.Tensor) -> torch.Tensor:
    """All squared Euclidean distances between the rows of a centred cloud, by one matrix product.

    Parameters
    ----------
    X : torch.Tensor, shape (n, d)

    Returns
    -------
    torch.Tensor, shape (n, n)
        Symmetric, non-negative, zero on the diagonal, in ``X``'s dtype and device.

    Centring first keeps the cancellation error of ``|x|² + |y|² - 2 x·y`` proportional to the
    spread of the cloud rather than to its distance from the origin.
    """
    Xc = X - X.mean(dim=0, keepdim=True)
    sq = (Xc * Xc).sum(dim=1)
    D2 = torch.addmm(sq[:, None], Xc, Xc.T, alpha=-2.0)  # fused: no n×n temporaries
    D2.add_(sq[None, :]).clamp_(min=0.0)
    D2.fill_diagonal_(0.0)
    return D2


def prim_mst(D2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum spanning trees of a batch of complete graphs (Prim's algorithm, batched).

    Parameters
    ----------
    D2 : torch.Tensor, shape (B, m, m)
        Symmetric edge weights (any increasing function of the distances, e.g. squared distances);
        not modified. Padding vertices may be given weight ``inf`` to every other vertex.

    Returns
    -------
    edges : torch.Tensor, shape (B, m - 1, 2), int64
        Edge ``v - 1`` is ``(v, parent of v)`` for v = 1..m-1, the tree rooted at vertex 0.
    weights : torch.Tensor, shape (B, m - 1)
        The weight of each of those edges (``inf`` for padding vertices).

    The loop runs ``m - 1`` times over the whole batch at once, so many small clouds (the subsamples
    of a PHdim fit, the classes of a block) cost about as many tensor operations as one. A vertex
    in the tree holds key ``-inf``: no row is ever smaller, so it is never updated again, and the
    ``abs`` in the selection keeps it from being chosen twice. A vertex's parent therefore stays
    the one it joined with, and the edges are read off at the end.
    """
    B, m, _ = D2.shape
    device = D2.device
    if device.type == "cpu":
        parent = torch.from_numpy(_prim_parents_numpy(D2.numpy()))
    else:
        parent = _prim_parents_torch(D2)
    rows = torch.arange(B, device=device)
    vertices = torch.arange(1, m, device=device).expand(B, -1)
    edges = torch.stack([vertices, parent[:, 1:]], dim=2)
    weights = D2[rows[:, None], vertices, parent[:, 1:]]
    return edges, weights


def _prim_parents_torch(D2: torch.Tensor) -> torch.Tensor:
    """The loop of :func:`prim_mst` in torch, for accelerators (no host synchronisation)."""
    B, m, _ = D2.shape
    rows = torch.arange(B, device=D2.device)
    parent = torch.zeros(B, m, dtype=torch.long, device=D2.device)
    best = D2[:, 0, :].clone()
    best[:, 0] = -math.inf
    for _ in range(m - 1):
        j = best.abs().argmin(dim=1)
        best[rows, j] = -math.inf
        row = D2[rows, j]
        closer = row < best
        best = torch.where(closer, row, best)
        parent = torch.where(closer, j[:, None], parent)
    return parent


def _prim_parents_numpy(D2: np.ndarray) -> np.ndarray:
    """The loop of :func:`prim_mst` in NumPy, for the CPU: in-place operations, a few
    microseconds per step where torch's per-operation overhead would dominate."""
    B, m, _ = D2.shape
    parent = np.zeros((B, m), dtype=np.int64)
    best = D2[:, 0, :].copy()
    best[:, 0] = -np.inf
    key = np.empty_like(best)
    closer = np.empty(best.shape, dtype=bool)
    rows = np.arange(B)
    for _ in range(m - 1):
        np.abs(best, out=key)
        if B == 1:
            j = int(key[0].argmin())
            best[0, j] = -np.inf
            row = D2[0, j][None]  # a view: no copy of the row
            np.less(row, best, out=closer)
            np.copyto(best, row, where=closer)
            np.copyto(parent, j, where=closer)
        else:
            j = key.argmin(axis=1)
            best[rows, j] = -np.inf
            row = D2[rows, j]
            np.less(row, best, out=closer)
            np.copyto(best, row, where=closer)
            np.copyto(parent, j[:, None], where=closer)
    return parent


def stacked_squared_distances(clouds: Sequence[torch.Tensor], padding: float = 0.0) -> torch.Tensor:
    """Squared distance matrices of several clouds, padded into one tensor.

    Parameters
    ----------
    clouds : sequence of G tensors of shapes (n_g, d_g), on one device
        The clouds may differ in size and in dimension.
    padding : float
        Value of the entries beyond a smaller cloud; ``inf`` keeps padding vertices out of a
        minimum spanning tree's real edges.

    Returns
    -------
    torch.Tensor, shape (G, max n_g, max n_g)
    """
    if len(clouds) == 1:
        return squared_distances(clouds[0])[None]
    N = max(c.shape[0] for c in clouds)
    out = clouds[0].new_full((len(clouds), N, N), padding)
    for g, cloud in enumerate(clouds):
        out[g, : cloud.shape[0], : cloud.shape[0]] = squared_distances(cloud)
    return out


def subcloud_mst(
    D2: torch.Tensor, group: torch.Tensor, idx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum spanning trees of many sub-clouds at once.

    Parameters
    ----------
    D2 : torch.Tensor, shape (G, N, N)
        Squared distances of G clouds (see :func:`stacked_squared_distances`).
    group : torch.Tensor, shape (B,), int64
        Which cloud each sub-cloud is taken from.
    idx : torch.Tensor, shape (B, m), int64
        The points of each sub-cloud; entries ``-1`` pad smaller sub-clouds up to m points.

    Returns
    -------
    edges : torch.Tensor, shape (B, m - 1, 2)
        ``(position, parent position)`` within each row of ``idx``, as :func:`prim_mst`. The
        first ``k - 1`` edges of a sub-cloud of ``k`` real points are its tree (padding comes last).
    weights : torch.Tensor, shape (B, m - 1)
        Squared lengths of those edges (``inf`` for padding).
    """
    pad = idx < 0
    safe = idx.clamp(min=0)
    sub = D2[group[:, None, None], safe[:, :, None], safe[:, None, :]]
    sub.masked_fill_(pad[:, :, None] | pad[:, None, :], math.inf)
    return prim_mst(sub)


def chunks(sizes: Sequence[int], limit: int = CHUNK_ELEMENTS, fill: float = 0.9) -> list[slice]:
    """Split items of descending sizes into runs of one batched Prim call each.

    A chunk's ``count * max(size)**2`` stays within ``limit`` (memory), and an item joins a
    chunk only if it is at least ``fill`` times the chunk's largest size: padding a small cloud
    up to a large one costs as much as the large one.
    """
    out, start = [], 0
    while start < len(sizes):
        stop, m = start + 1, sizes[start]
        while stop < len(sizes) and sizes[stop] >= fill * m and (stop + 1 - start) * m**2 <= limit:
            stop += 1
        out.append(slice(start, stop))
        start = stop
    return out


def h0_death_times_many(clouds: Sequence[torch.Tensor | np.ndarray]) -> list[torch.Tensor]:
    """:func:`h0_death_times` of several clouds, computed in one batched run of Prim's algorithm.

    The clouds must share a device; they may differ in size and in dimension. This is how the
    monitor handles all classes of all blocks of a network at once: per-call overhead is paid once.
    """
    clouds = [as_cloud(c, name=f"cloud {g}") for g, c in enumerate(clouds)]
    out: list[torch.Tensor] = [torch.empty(0)] * len(clouds)
    order = sorted(range(len(clouds)), key=lambda g: -clouds[g].shape[0])
    for part in chunks([clouds[g].shape[0] for g in order]):
        members = [clouds[g] for g in order[part]]
        # The tree is found on distances in the cloud's own precision (the cost of cdist); only
        # its n - 1 edges are then measured exactly, in float64, so duplicates give exactly 0.
        edges, _ = prim_mst(stacked_squared_distances(members, padding=math.inf))
        for row, (g, cloud) in enumerate(zip(order[part], members, strict=True)):
            tree = edges[row, : cloud.shape[0] - 1]
            exact = cloud.to(work_dtype(cloud.device))
            lengths = torch.linalg.vector_norm(exact[tree[:, 0]] - exact[tree[:, 1]], dim=1)
            out[g] = lengths.sort().values.to(cloud.dtype)
    return out


def h0_death_times(X: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Finite H0 death times of the Vietoris–Rips filtration: the Euclidean MST edge lengths.

    Parameters
    ----------
    X : torch.Tensor or numpy.ndarray, shape (n, d)
        A point cloud, one point per row. NumPy input is computed on the CPU.

    Returns
    -------
    torch.Tensor, shape (n - 1,)
        Sorted ascending, on ``X``'s device, float64 for float64 input and float32 otherwise.
        Empty for ``n == 1``. Equal to gudhi's finite H0 deaths (``RipsComplex``) to rounding.

    Raises
    ------
    ValueError
        If ``X`` is not two-dimensional, has no points, or holds NaN or infinite values.

    Notes
    -----
    O(n²) time and one n×n matrix of memory; no simplicial complex is built. The tree is found on
    squared distances computed in float64, then every tree edge is measured again directly as
    ``|x_i - x_j|`` so that duplicate points give exactly zero.
    """
    return h0_death_times_many([as_cloud(X)])[0]


def _finite(bars: np.ndarray) -> np.ndarray:
    bars = np.asarray(bars, dtype=np.float64).reshape(-1, 2)
    return bars[np.isfinite(bars).all(axis=1)]


def barcode(
    X: torch.Tensor | np.ndarray,
    max_dim: int = 1,
    max_points: int | None = None,
    generator: torch.Generator | np.random.Generator | int | None = None,
) -> list[np.ndarray]:
    """Finite bars of the Vietoris–Rips persistence of a cloud, one diagram per homology dimension.

    Parameters
    ----------
    X : torch.Tensor or numpy.ndarray, shape (n, d)
    max_dim : int, default 1
        Highest homology dimension. H0 comes from the exact MST; H1 and above from gudhi's
        ``RipsComplex`` with edge collapse (which preserves persistence exactly), expanded to
        simplices of dimension ``max_dim + 1``.
    max_points : int, optional
        If the cloud has more points, a uniform random subset of this size is used for *every*
        dimension, so that all diagrams describe the same cloud. Rips persistence above H0 grows
        very fast with n: cap it.
    generator : torch.Generator, numpy.random.Generator or int, optional
        Source of randomness for the subsample (an int is a seed). Never the global RNG.

    Returns
    -------
    list of numpy.ndarray, each of shape (k_i, 2)
        ``bars[i]`` holds the (birth, death) pairs of H_i with finite death, in float64.
        Infinite bars (one in H0) are dropped. H0 keeps zero-length bars (duplicate points);
        higher dimensions keep only bars of positive length, as gudhi reports them.
    """
    X = as_cloud(X)
    if not isinstance(max_dim, int) or max_dim < 0:
        raise ValueError(f"max_dim must be a non-negative int, got {max_dim!r}")
    if max_points is not None:
        if not isinstance(max_points, int) or max_points < 1:
            raise ValueError(f"max_points must be a positive int or None, got {max_points!r}")
        if X.shape[0] > max_points:
            X = X[subsample_indices(X.shape[0], max_points, as_generator(generator)).to(X.device)]
    deaths = h0_death_times(X).double().cpu().numpy()
    bars = [np.column_stack([np.zeros_like(deaths), deaths])]
    if max_dim >= 1:
        bars.extend(_gudhi_bars(X, max_dim))
    return bars


def _gudhi_bars(X: torch.Tensor, max_dim: int) -> list[np.ndarray]:
    """Bars of H_1..H_max_dim from gudhi, on the exact distance matrix."""
    import gudhi

    points = X.detach().double().cpu().numpy()
    if points.shape[0] < 3:
        return [np.empty((0, 2)) for _ in range(max_dim)]
    tree = gudhi.RipsComplex(points=points).create_simplex_tree(max_dimension=1)
    tree.collapse_edges(-1)  # collapse until stable: far fewer simplices, same persistence
    tree.expansion(max_dim + 1)
    tree.compute_persistence(homology_coeff_field=2, persistence_dim_max=True)
    return [_finite(tree.persistence_intervals_in_dimension(dim)) for dim in range(1, max_dim + 1)]


def total_persistence(
    bars: np.ndarray | torch.Tensor | Sequence[Sequence[float]],
    alpha: float = 1.0,
    scale: float = 1.0,
) -> float:
    """E_α = Σ ((death − birth) / scale)^α over the finite bars of one diagram.

    Parameters
    ----------
    bars : array-like, shape (k, 2)
        (birth, death) pairs. Infinite bars must have been dropped (:func:`barcode` does).
    alpha : float, default 1.0
        Exponent; ``alpha=1`` with H0 gives the length of the Euclidean MST.
    scale : float, default 1.0
        Divides every lifespan. Raw E grows linearly with the activations' scale (E_α like
        ``scale**alpha``), so comparing layers or epochs whose activations differ in size compares
        their sizes more than their shapes. With ``scale=cloud_scale(X)`` the value is the
        *scale-free* E: invariant to translating and scaling the cloud.

    Returns
    -------
    float
        0.0 for an empty diagram.
    """
    bars = as_diagram(bars)
    if not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    lifespans = (bars[:, 1] - bars[:, 0]) / scale
    return float(np.sum(lifespans**alpha))


def mean_lifespan(bars: np.ndarray | torch.Tensor | Sequence[Sequence[float]]) -> float:
    """E_1 divided by the number of finite bars: the average bar length of one diagram.

    Returns NaN for an empty diagram, where the mean is undefined.
    """
    bars = as_diagram(bars)
    if len(bars) == 0:
        return math.nan
    return float(np.mean(bars[:, 1] - bars[:, 0]))


def cloud_scale(X: torch.Tensor | np.ndarray) -> float:
    """Root-mean-square distance of the points to their centroid: the size used by the scale-free E.

    Zero when all points coincide.
    """
    X = as_cloud(X).double()
    return float(((X - X.mean(dim=0)) ** 2).sum(dim=1).mean().sqrt())
