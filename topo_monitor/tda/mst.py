"""The MST engine: exact Euclidean minimum spanning trees of many clouds at once.

Every H0 bar of a Vietoris–Rips filtration dies at the length of an edge of a Euclidean MST, and
PHdim needs the MST lengths of many subsamples: both are answered here, in torch on the cloud's
device (NumPy for the CPU loop). Clouds of one shape go through batched tensor operations (Prim's
algorithm, :func:`prim_mst`, on the CPU; Borůvka's, :func:`boruvka_mst`, on accelerators, where
a loop of one step per vertex would be one of kernel launches), so the classes of every block, or
the subsamples of a PHdim fit, cost about as many operations as one cloud. One cloud on the CPU
(the H0 of a whole cloud), or each of a few large ones (:func:`one_by_one`), takes a faster road
(:func:`_cloud_tree`): its Gram matrix with the norms inside the product, and Borůvka's algorithm
on it, a few vectorized rounds where Prim's loop takes a step per vertex. A large cloud multiplies
and stores only the upper block triangle of its matrix, finding each point's nearest neighbour as
each column block is made (:func:`boruvka_triangle`); a smaller one, whose whole matrix stays in
cache, the whole matrix (:func:`boruvka_edges`; for narrow clouds the first pass made block by
block as the matrix is computed, :func:`_gram_nearest`; for wide ones half of it multiplied,
:func:`_gram_one`).

Float32 speed, float64 answers (:func:`mst_tree`). The tree is *searched* in float32, on squared
distances in Gram form (one matrix product on the BLAS, the cloud centred first, in its own dtype,
and scaled by a power of two, so that no value leaves float32's range); only its n - 1 edges are
then *measured*, in float64, as ``|x_i - x_j|`` from the points. Every length, and so E0, the H0
deaths and everything computed from them, is exact to float64 rounding; what float32 can change is
only which tree is found, among edges whose lengths agree to float32 rounding. Where the search
cannot be trusted to that (edges too short for float32 to see, next to the cloud's extent:
near-duplicates, the closest pairs of a low-dimensional cloud, tight clusters far apart), those
neighbourhoods alone are redone exactly (:func:`repair_blind`).

A cloud whose dense search would exceed :data:`DENSE_BYTES` (:func:`dense_fits`: n > 13377 in
float32) is not given a matrix: the search goes to
:func:`prim_mst_from_points`, Prim's algorithm with each distance row computed when it is needed,
in O(n·d) memory. The dense path is kept below the bound because it is the faster: it reads
stored distances where the other computes them.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

CHUNK_ELEMENTS = 2**24
"""Batched Prim runs are split so that one run holds at most this many distance entries."""

DENSE_BYTES = 2**30
"""Most memory (bytes) that the dense search of one cloud may take (:func:`dense_fits`).

1 GiB, as much as a monitor running beside training should borrow: the n×n matrix and the row
minima of its components in Borůvka's algorithm (at most half as much again), so n = 13377
points for the float32 search (9459 in float64). Above it the tree is found
from the points (:func:`prim_mst_from_points`), whose memory grows like n·d instead of n²: at
n = 20000 the matrix alone would be 1.6 GB in float32, at 50000 10 GB. Below it the dense path is
kept because it is faster wherever d is not tiny: measured on 2 busy CPU cores at n = 5000-10000,
the points path took 0.9× the dense time at d = 16, 1.4-1.6× at d = 64, 2-4× at d = 256 and 5-8×
at d = 1024 (it reads the whole cloud at every step). A chunk of several clouds never reaches
the bound: it holds at most :data:`CHUNK_ELEMENTS` entries.
"""

EDGE_CHUNK = 2**16
"""Coordinates per slice of tree edges that :func:`edge_lengths` gathers at a time."""

GRAM_ROUNDING = 8.0
"""Bound on the error of a float32 Gram-form squared distance, in float32 roundings of the norms.

``|x_i|² + |x_j|² - 2 x_i·x_j`` computed in float32 (the centred cloud rounded to float32, then
the matrix product) is within ``Δ = GRAM_ROUNDING · 2⁻²⁴ · (|x_i|² + |x_j|²)`` of the exact squared
distance. Measured: at most 7 (160,000 pairs of Gaussian, ReLU and offset clouds, d = 2 to 4096,
MKL): the rounding of the norms dominates, not the length of the dot products.
"""

BLIND_FACTOR = 32.0
"""A tree edge is *blind* to the float32 search when its squared length is below this many Δ.

Δ is the rounding of :data:`GRAM_ROUNDING` at the cloud's largest norm: float32 holds fewer than
5 correct bits of such an edge, and could as well have taken a very different one
(:func:`repair_blind` redoes its neighbourhood exactly).
"""

__all__ = [
    "BLIND_FACTOR",
    "CHUNK_ELEMENTS",
    "CHUNK_ROWS",
    "COLUMN_BLOCK",
    "DENSE_BYTES",
    "EDGE_CHUNK",
    "GRAM_PAIRS",
    "GRAM_ROUNDING",
    "HOLDER_READS",
    "PAIR_WINDOW",
    "SMALL_CHUNK",
    "TRIANGLE_BYTES",
    "VERTICES_PER_GRAPH",
    "boruvka_edges",
    "boruvka_mst",
    "boruvka_triangle",
    "by_shape",
    "chunks",
    "column_blocks",
    "dense_fits",
    "edge_lengths",
    "mst_edges",
    "mst_lengths",
    "mst_tree",
    "nearest_forest",
    "one_by_one",
    "pair_lengths",
    "prim_mst",
    "prim_mst_from_points",
    "repair_blind",
    "search_dtype",
    "squared_distances",
    "stacked_squared_distances",
    "subcloud_mst_lengths",
    "work_dtype",
]


def work_dtype(device: torch.device) -> torch.dtype:
    """float64 wherever the device has it: the H0 values must match gudhi's double precision."""
    return torch.float32 if device.type == "mps" else torch.float64


def search_dtype(device: torch.device) -> torch.dtype:
    """The dtype in which trees are searched: float32 where its matrix products round as float32.

    A process that lowered float32 matrix-product precision (TF32 or bfloat16 inside: about 2⁻¹¹
    or 2⁻⁸ relative, through ``torch.set_float32_matmul_precision`` or the backends'
    ``fp32_precision``) would break :data:`GRAM_ROUNDING`; it gets the search in
    :func:`work_dtype` instead.
    """
    return torch.float32 if _exact_float32_products(device) else work_dtype(device)


def _exact_float32_products(device: torch.device) -> bool:
    """Whether float32 matrix products on ``device`` keep float32's precision."""
    backend = torch.backends.cuda if device.type == "cuda" else torch.backends.mkldnn
    precision = getattr(getattr(backend, "matmul", None), "fp32_precision", None)
    if precision is not None:  # torch >= 2.9, where reading the older settings may raise
        return precision in ("none", "ieee")
    tf32 = device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    return torch.get_float32_matmul_precision() == "highest" and not tf32


def squared_distances(X: torch.Tensor) -> torch.Tensor:
    """All squared Euclidean distances between the rows of a centred cloud, by one matrix product.

    Parameters
    ----------
    X : torch.Tensor, shape (n, d) or (B, n, d)
        One cloud, or a batch of clouds of one shape.

    Returns
    -------
    torch.Tensor, shape (n, n) or (B, n, n)
        Symmetric, non-negative, zero on the diagonal, in ``X``'s dtype and device.

    Centring first keeps the cancellation error of ``|x|² + |y|² - 2 x·y`` proportional to the
    spread of the cloud rather than to its distance from the origin.
    """
    D2 = _gram(*_centred(X)).clamp_(min=0.0)
    D2.diagonal(dim1=-2, dim2=-1).fill_(0.0)
    return D2


def _gram(Xc: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    """``|x_i|² + |x_j|² - 2 x_i·x_j`` for clouds ``Xc`` (..., n, d) of squared norms ``sq``
    (..., n): one fused matrix product and one addition, no n×n temporaries. Not clamped: a
    search needs no more (Prim compares absolute values, and a vertex's own entry is never read
    once it is in the tree; Borůvka masks each component's own entries). One cloud on the CPU
    goes to :func:`_gram_one`."""
    one_cloud = Xc.dim() == 2 or (Xc.dim() == 3 and Xc.shape[0] == 1)
    if one_cloud and Xc.device.type == "cpu":
        return _gram_one(Xc.reshape(Xc.shape[-2:]), sq.reshape(-1)).reshape(*sq.shape, -1)
    if Xc.dim() == 2:
        D2 = torch.addmm(sq[:, None], Xc, Xc.T, alpha=-2.0)
    else:
        D2 = torch.baddbmm(sq[..., None], Xc, Xc.transpose(-2, -1), alpha=-2.0)
    return D2.add_(sq[..., None, :])


SYMMETRIC_MIN_DIM = 256
"""From this dimension on, :func:`_gram_one` computes only the upper block triangle."""


def _gram_one(Xc: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    """:func:`_gram` of one cloud (n, d) on the CPU, where the matrix product is the cost.

    Below :data:`SYMMETRIC_MIN_DIM` the norms ride inside the product (:func:`_augmented`), so
    that no pass over the n×n result adds them (as ``torch.cdist`` does). From it on, where the
    arithmetic outweighs the memory traffic, only the upper block triangle is multiplied (4 row
    blocks: 5/8 of the arithmetic), each block taking its norms while it is in cache, and the rest
    is its mirror image: measured 1.5x faster at n = 1000, d = 512 on 2 cores, no faster at d = 64.
    """
    n = Xc.shape[0]
    if Xc.shape[1] < SYMMETRIC_MIN_DIM or n < 256:
        left, right = _augmented(Xc, sq)
        return left @ right
    D2 = Xc.new_empty(n, n)
    step = -(-n // 4)
    for start in range(0, n, step):
        rows = slice(start, start + step)
        block = torch.addmm(sq[rows, None], Xc[rows], Xc[start:].T, alpha=-2.0)
        D2[rows, start:] = block.add_(sq[start:])
        D2[rows, :start] = D2[:start, rows].T
    return D2


def _augmented(Xc: torch.Tensor, sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The factors (n, d + 2) and (d + 2, n) whose product is the Gram-form matrix of one cloud:
    ``[x_i, |x_i|², 1] · [-2 x_j, 1, |x_j|²]``."""
    one = Xc.new_ones(Xc.shape[0], 1)
    left = torch.cat([Xc, sq[:, None], one], dim=1)
    return left, torch.cat([-2.0 * Xc, one, sq[:, None]], dim=1).T


NARROW_DIM = 32
"""Below this dimension, :func:`_gram_nearest` finds the nearest neighbours block by block."""

BLOCK_BYTES = 2**22
"""Size of the row blocks of :func:`_gram_nearest`: a few MiB, in cache when they are read."""


def _gram_nearest(Xc: torch.Tensor, sq: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_gram_one` of one cloud on the CPU and, for a narrow cloud, Borůvka's first pass.

    For d below :data:`NARROW_DIM` the product is cheap and writing the n×n matrix is most of its
    cost; reading it all back for every row's nearest neighbour (:func:`boruvka_edges`) costs as
    much again. So the matrix is made in row blocks of :data:`BLOCK_BYTES`, and each block's
    nearest neighbours are found while it is still in cache: measured on 2 cores, 0.55-0.85x the
    time of the product and the separate pass at n = 3000-10000, d = 2-16 (the whole search
    0.75-0.9x), no gain from d = 32 on, where the product dominates (the separate pass then runs
    on all threads). On a shared VM, in spells where the second core answered late, the block
    products' waits made it 1.2-1.5x slower instead.

    Returns the matrix (n, n), whose diagonal is ``inf`` where the pass was made, and each row's
    nearest other point (n,), or ``None`` where it is left to :func:`boruvka_edges`.
    """
    n, d = Xc.shape
    if d >= NARROW_DIM:
        return _gram_one(Xc, sq).numpy(), None
    left, right = _augmented(Xc, sq)
    D2 = Xc.new_empty(n, n)
    nearest = np.empty(n, dtype=np.int64)
    step = max(1, BLOCK_BYTES // (n * Xc.element_size()))
    for start in range(0, n, step):
        rows = slice(start, start + step)
        block = torch.mm(left[rows], right, out=D2[rows]).numpy()
        block.reshape(-1)[start :: n + 1] = np.inf  # its part of the diagonal
        nearest[rows] = block.argmin(axis=1)
    return D2.numpy(), nearest


def _centred(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clouds ``X`` of shape (..., n, d) minus their centroid, and their squared norms (..., n)."""
    Xc = X - X.mean(dim=-2, keepdim=True)
    return Xc, (Xc * Xc).sum(dim=-1)


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
    of a PHdim fit, the classes of a block) cost about as many tensor operations as one.
    """
    B, m, _ = D2.shape
    parent = _prim(D2, parents=True)
    rows = torch.arange(B, device=D2.device)
    vertices = torch.arange(1, m, device=D2.device).expand(B, -1)
    edges = torch.stack([vertices, parent[:, 1:]], dim=2)
    weights = D2[rows[:, None], vertices, parent[:, 1:]]
    return edges, weights


def mst_lengths(D2: torch.Tensor) -> torch.Tensor:
    """Euclidean length of the minimum spanning tree of each of a batch of clouds.

    Parameters
    ----------
    D2 : torch.Tensor, shape (B, m, m)
        *Squared* distances; padding vertices at weight ``inf`` to every other vertex.

    Returns
    -------
    torch.Tensor, shape (B,)
        Sum of the tree's edge lengths (padding vertices add nothing). On the CPU a few large
        graphs (:func:`one_by_one`) are searched one at a time by :func:`boruvka_edges`, the others
        by Prim's loop, keeping only the weight with which each vertex joins; on accelerators the
        weights of :func:`boruvka_mst`'s edges.
    """
    B, m, _ = D2.shape
    if D2.device.type != "cpu":
        weights = boruvka_mst(D2)[1]
    elif one_by_one(B, m):
        weights = D2.new_empty(B, max(m - 1, 0))
        for graph, out in zip(D2.numpy(), weights.numpy(), strict=True):
            edges = boruvka_edges(graph)
            out[:] = graph[edges[:, 0], edges[:, 1]]
    else:
        weights = _prim(D2, parents=False)
    return weights.nan_to_num(posinf=0.0).sqrt().sum(dim=1)


VERTICES_PER_GRAPH = 50
""":func:`one_by_one`'s rule: at least this many vertices per graph of a batch."""


def one_by_one(B: int, m: int) -> bool:
    """Whether a batch of B graphs of m vertices is searched faster one graph at a time by
    :func:`boruvka_edges` than by one batched run of Prim's loop, on the CPU.

    Prim's loop takes m - 1 steps whatever B (a few µs each, plus the batch's rows); Borůvka's
    takes a few vectorized rounds per graph (some hundred µs each, plus two passes over its
    matrix). Measured on 2 cores (d = 64, time of Prim over Borůvka): m = 150: 1.3-1.7x for B ≤ 2,
    0.8x at B = 4; m = 250: 1.4x at B = 4, 0.8x at B = 8; m = 400: 1.3x at B = 8, 0.9x at B = 12;
    m = 1000: 1.8x at B = 12. Hence ``B * VERTICES_PER_GRAPH <= m``.
    """
    return B * VERTICES_PER_GRAPH <= m


def _prim(D2: torch.Tensor, parents: bool) -> torch.Tensor:
    """Prim's loop. Returns the parent of every vertex, shape (B, m), if ``parents``; otherwise
    the m - 1 weights with which the vertices join the tree, in joining order, shape (B, m - 1).

    A vertex in the tree holds key ``-inf``: ``minimum`` never raises it again, and the ``abs`` in
    the selection keeps it from being chosen twice. NumPy on the CPU (in-place operations, a few
    microseconds per step where torch's per-operation overhead would dominate), torch elsewhere
    (no host synchronisation).
    """
    if D2.device.type != "cpu":
        return _prim_torch(D2, parents)
    return torch.from_numpy(_prim_numpy(D2.numpy(), parents))


def _prim_torch(D2: torch.Tensor, parents: bool) -> torch.Tensor:
    """:func:`_prim` in torch, for accelerators: no host synchronisation in the loop."""
    B, m, _ = D2.shape
    rows = torch.arange(B, device=D2.device)
    parent = torch.zeros(B, m, dtype=torch.long, device=D2.device)
    joins = D2.new_empty(B, max(m - 1, 0))
    best = D2[:, 0, :].clone()
    best[:, 0] = -math.inf
    for step in range(m - 1):
        key = best.abs()
        j = key.argmin(dim=1)
        if not parents:
            joins[:, step] = key[rows, j]
        best[rows, j] = -math.inf
        row = D2[rows, j]
        if parents:
            parent = torch.where(row < best, j[:, None], parent)
        best = torch.minimum(best, row)
    return parent if parents else joins


def _prim_numpy(D2: np.ndarray, parents: bool) -> np.ndarray:
    """:func:`_prim` for the CPU: every operation counts, since the loop runs m - 1 times."""
    B, m, _ = D2.shape
    rows = np.arange(B)
    parent = np.zeros((B, m), dtype=np.int64)
    joins = np.empty((B, max(m - 1, 0)), dtype=D2.dtype)
    best = D2[:, 0, :].copy()
    best[:, 0] = -np.inf
    key = np.empty_like(best)
    closer = np.empty(best.shape, dtype=bool)
    for step in range(m - 1):
        np.abs(best, out=key)
        if B == 1:  # one cloud: views, no fancy-indexing copies
            j = int(key[0].argmin())
            if not parents:
                joins[0, step] = key[0, j]
            best[0, j] = -np.inf
            row = D2[0, j][None]
            if parents:  # a boolean-mask store: 1 µs at n = 3000, where copyto took 5
                np.less(row, best, out=closer)
                parent[closer] = j
        else:
            j = key.argmin(axis=1)
            if not parents:
                joins[:, step] = key[rows, j]
            best[rows, j] = -np.inf
            row = D2[rows, j]
            if parents:
                np.less(row, best, out=closer)
                np.copyto(parent, j[:, None], where=closer)
        np.minimum(best, row, out=best)
    return parent if parents else joins


def boruvka_mst(D2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum spanning trees of a batch of complete graphs by Borůvka's algorithm, in torch.

    Parameters
    ----------
    D2 : torch.Tensor, shape (B, m, m)
        Edge weights, as for :func:`prim_mst` (padding vertices at ``inf`` to every other
        vertex); its diagonal is set to ``inf`` while the search runs and then restored.

    Returns
    -------
    edges : torch.Tensor, shape (B, m - 1, 2), int64
        The n_b - 1 edges of graph ``b``'s tree in its first rows, in no particular order; the
        rows after them (padding) are ``(0, 0)``.
    weights : torch.Tensor, shape (B, m - 1)
        The weight of each edge, as read from ``D2``; ``inf`` on padding rows.

    For accelerators, where Prim's loop (:func:`prim_mst`) is m - 1 steps of a few kernel launches
    each: Borůvka takes about log₂ m rounds of a few dozen, whatever m. (On 2 CPU cores it took
    0.6-0.8x Prim's time for a few graphs of 400-3000 vertices, 1.1-1.6x for 16 of them or for
    smaller ones: the CPU keeps Prim.) It is :func:`boruvka_edges` on all graphs of the batch
    at once, as one graph of B·m vertices whose components never cross from one graph to another
    (each component's minima are read from its own graph's rows): the first round links each
    vertex to its nearest neighbour, each later round each component to its nearest other
    component of the same graph (the column minima of its rows, contracted as components merge);
    a component with no finite edge left (its graph spanned, or a padding vertex) links nowhere.
    Ties go to the lowest index, and a cycle of links loses the link of its lowest member
    (:func:`nearest_forest`). A few host synchronisations per round.
    """
    B, m, _ = D2.shape
    V = B * m
    # Vertex v = (b, i) is b·m + i; its row holds its weights to graph b's vertices.
    rows = D2.reshape(V, m)
    diagonal = rows.view(B, m, m).diagonal(dim1=1, dim2=2)
    kept = diagonal.clone()
    diagonal.fill_(math.inf)  # a vertex is not its own neighbour
    try:
        vertex = torch.arange(V, device=D2.device)
        graph, local = vertex // m, vertex % m
        reach, nearest = rows.min(dim=1)
        nearest = torch.where(reach.isfinite(), graph * m + nearest, vertex)
        root = nearest_forest(nearest)
        links = [torch.stack([vertex, nearest], dim=1)[root != vertex]]
        component, count = _number(root)
        minima = _minima(rows, component, count)
        while True:
            minima[component, local] = math.inf  # a component's own columns
            reach, column = minima.min(dim=1)
            active = reach.isfinite()
            if not bool(active.any()):
                break
            index = torch.arange(count, device=D2.device)
            member = vertex.new_empty(count).scatter_(0, component, vertex)  # any one of each
            far = graph[member] * m + column
            # The end of each link in its component: the first vertex whose row holds the minimum.
            holds = rows.gather(1, column[component, None]).squeeze(1) == reach[component]
            first = torch.where(holds, vertex, V)
            near = first.new_full((count,), V).scatter_reduce_(0, component, first, "amin")
            root = nearest_forest(torch.where(active, component[far], index))
            linked = root != index  # an inactive component is its own target
            links.append(torch.stack([near, far], dim=1)[linked])
            merged, count = _number(root)
            minima = _minima(minima, merged, count)
            component = merged[component]
        return _per_graph(torch.cat(links), rows, B, m)
    finally:
        diagonal.copy_(kept)


def _per_graph(
    links: torch.Tensor, rows: torch.Tensor, B: int, m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`boruvka_mst`'s links (L, 2) between vertices b·m + i, as each graph's edges between
    its own vertices in its first rows (B, m - 1, 2), and their weights read from ``rows``."""
    weight = rows[links[:, 0], links[:, 1] % m]
    graph = links[:, 0] // m
    order = torch.argsort(graph, stable=True)
    links, graph, weight = links[order], graph[order], weight[order]
    counts = torch.bincount(graph, minlength=B)
    slot = torch.arange(len(links), device=links.device) - (counts.cumsum(0) - counts)[graph]
    edges = links.new_zeros(B, max(m - 1, 0), 2)
    weights = rows.new_full((B, max(m - 1, 0)), math.inf)
    edges[graph, slot] = links % m
    weights[graph, slot] = weight
    return edges, weights


def boruvka_edges(D2: np.ndarray, nearest: np.ndarray | None = None) -> np.ndarray:
    """The edges (shape (m - 1, 2), int64) of a minimum spanning tree of one complete graph (m, m),
    by Borůvka's algorithm on the dense matrix, for the CPU.

    Each round links every component to its nearest other component (the lightest edge across the
    cut around it, so an edge of a minimum spanning tree) and merges what it linked: at least half
    as many components after each round, a few vectorized operations per round where Prim's loop
    would take a Python step per vertex. The first round is on the points: every vertex's nearest
    neighbour, one pass over ``D2``. The later rounds read the row minima of the components
    (:func:`_contract`, one more pass: on Gaussian clouds in 64 dimensions a tenth of ``D2``, at
    most half since every component holds two points or more), contracted as they merge; each link
    is traced back to its two points by the entry its length was read from
    (:func:`_boruvka_rounds`). Ties go to the lowest index; a cycle of links (a mutual pair, or a
    longer one where float32 rounds ``d(a, b)`` and ``d(b, a)`` differently) loses the link of its
    lowest member (:func:`nearest_forest`). ``D2`` is not modified. Its first pass may have been
    made already, while ``D2`` was computed (:func:`_gram_nearest`): then ``nearest`` (m,) gives
    every vertex's nearest other vertex.
    """
    if nearest is None:
        diagonal = D2.diagonal().copy()
        np.fill_diagonal(D2, np.inf)  # a vertex is not its own neighbour
        try:
            nearest = _row_argmin(D2)
        finally:
            np.fill_diagonal(D2, diagonal)
    return _boruvka_rounds(
        nearest,
        lambda component, count: _contract(D2, component, count),
        lambda rows, columns: D2[rows, columns],
    )


def boruvka_triangle(Xc: torch.Tensor, sq: torch.Tensor) -> np.ndarray:
    """:func:`boruvka_edges` of one prepared cloud on the CPU, from half of its matrix.

    Parameters
    ----------
    Xc : torch.Tensor, shape (n, d), float32 or float64, on the CPU
        The cloud centred and scaled (:func:`_prepare`).
    sq : torch.Tensor, shape (n,)
        Its squared norms.

    Returns
    -------
    numpy.ndarray, shape (n - 1, 2), int64

    The matrix is symmetric, so only its upper block triangle is multiplied and stored
    (:class:`_UpperTriangle`): 5/8 of the arithmetic and memory at 4 column blocks, 9/16 at 8, and
    each vertex's nearest neighbour is found as each block is made. Each later round reads both
    ways of the contracted minima (:func:`_boruvka_rounds`): a pair stored in the row of its
    lower-block end counts for both of its components. Measured on 2 cores against the whole
    matrix and :func:`boruvka_edges` at n = 3000: 0.77-0.9x the time at d = 32-512 (more at
    larger n, less at smaller: :data:`TRIANGLE_BYTES`).
    """
    upper = _UpperTriangle(Xc, sq)
    return _boruvka_rounds(upper.nearest, upper.contract, upper.entries, upper.first_rows)


def _boruvka_rounds(
    nearest: np.ndarray,
    contract: Callable[[np.ndarray, int], np.ndarray],
    entries: Callable[[np.ndarray, np.ndarray], np.ndarray],
    first_rows: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Borůvka's algorithm from every vertex's nearest neighbour (m,); the tree's edges (m - 1, 2).

    ``contract(component, count)`` gives the minima (count, m) of the matrix's stored rows over
    each component; ``entries(rows, columns)`` reads stored entries (NaN where none is stored).
    Where each pair is stored once (:class:`_UpperTriangle`), a component's lightest edge may sit
    in another component's row: each round then also reads the minima by column
    (:func:`_column_links`, which finds the rows of a large component by ``first_rows``).
    """
    m = len(nearest)
    index = np.arange(m)
    root = nearest_forest(nearest)
    linked = root != index
    links = [np.stack([index[linked], nearest[linked]], axis=1)]
    component, count = _number(root)
    if count > 1:
        minima = contract(component, count)
    while count > 1:
        minima[component, index] = np.inf  # a component's own columns
        far = _row_argmin(minima)
        reach = minima[np.arange(count), far]
        # The end of each link in its component: the first point whose row holds the minimum.
        holds = np.flatnonzero(entries(index, far[component]) == reach[component])
        near = _first_of_each(component[holds], holds, count)
        target = component[far]
        if first_rows is not None:
            _column_links(minima, component, reach, (entries, first_rows), (near, far, target))
        root = nearest_forest(target)
        linked = root != np.arange(count)
        links.append(np.stack([near[linked], far[linked]], axis=1))
        merged, count = _number(root)
        if count > 1:
            minima = _contract(minima, merged, count)
        component = merged[component]
    return np.concatenate(links)


def _column_links(
    minima: np.ndarray,
    component: np.ndarray,
    reach: np.ndarray,
    read: tuple[Callable, Callable],
    link: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Where a component's lightest edge is stored in another component's row, its link; in place.

    ``minima`` (count, m) is min over the stored rows of each component, own columns masked;
    ``reach`` (count,) each component's lightest edge in its own rows; ``link`` = (near, far,
    target) of each component, rewritten where the column minimum of a member is lighter: the
    member, the first point of the row component that holds it, and that component. ``read`` =
    (entries, first_rows) of :class:`_UpperTriangle`: the members of small holding components are
    read entry by entry, unless a component holds the links of so many that it would take more
    than :data:`HOLDER_READS` reads: then its entries in their columns are read as blocks (many
    components may take their edge from one large one: entry by entry that took 16 million reads,
    1.4 s and 1.5 GB where a cloud's centre and a sphere around it held the edges of 3000 pairs
    of outliers; as blocks the whole cloud's search takes 0.39-0.41 s, 0.48 on the whole matrix).
    """
    entries, first_rows = read
    near, far, target = link
    count = len(reach)
    across = np.minimum.reduce(minima, axis=0)  # each point's lightest edge in others' rows
    best = np.full(count, np.inf, dtype=minima.dtype)
    np.minimum.at(best, component, across)
    wins = np.flatnonzero(best < reach)
    if len(wins) == 0:
        return
    hits = np.flatnonzero(across == best[component])
    point, value = _first_of_each(component[hits], hits, count)[wins], best[wins]
    holder = np.empty(len(wins), dtype=np.int64)  # the first row component holding it
    step = max(1, CHUNK_ELEMENTS // count)  # columns of minima gathered at a time
    for low in range(0, len(wins), step):
        part = slice(low, low + step)
        holder[part] = (minima[:, point[part]] == value[part]).argmax(axis=0)
    # Its first member whose stored entry in that column is the minimum.
    order = np.argsort(component, kind="stable")
    size = np.bincount(component, minlength=count)
    start = np.cumsum(size) - size
    reads = np.bincount(holder, minlength=count) * size  # entry by entry, for each holder
    light = np.flatnonzero(reads[holder] <= HOLDER_READS)
    many = size[holder[light]]
    slot = np.repeat(light, many)
    rank = np.arange(len(slot)) - np.repeat(np.cumsum(many) - many, many)
    member = order[start[holder[slot]] + rank]
    hit = np.flatnonzero(entries(member, point[slot]) == value[slot])
    first = _first_of_each(slot[hit], member[hit], len(wins))
    for h in np.flatnonzero(reads > HOLDER_READS).tolist():
        which = np.flatnonzero(holder == h)
        first[which] = first_rows(order[start[h] : start[h] + size[h]], point[which], value[which])
    near[wins], far[wins], target[wins] = point, first, holder


def _first_of_each(groups: np.ndarray, items: np.ndarray, count: int) -> np.ndarray:
    """The first of ``items`` in each of ``count`` groups, ``groups`` giving each item's; -1 for a
    group without one. NumPy assigns repeated indices in order, so written backwards the first
    of each group is the one that stays."""
    out = np.full(count, -1)
    out[groups[::-1]] = items[::-1]
    return out


HOLDER_READS = 2**14
"""A component whose members would be read more than this many times, entry by entry, for the
links it holds is read as blocks instead (:meth:`_UpperTriangle.first_rows`, in
:func:`_column_links`). Measured: a block read costs some 80 µs per column block, an entry read
20-70 ns; the bound also keeps the entry-by-entry reads of a round under about 90 per point."""


COLUMN_BLOCK = 768
"""Width (columns) of the blocks of :class:`_UpperTriangle`, about; a multiple of
:data:`CHUNK_ROWS`. Measured on 2 cores at n = 3000, the time over that of 256 columns at d = 64
and 512: 384 columns 0.90x and 0.98x, 768 0.86x and 1.02x; fewer blocks multiply more of the
matrix, more blocks cost more calls."""

CHUNK_ROWS = 16
"""Rows per chunk in which :func:`_column_argmin` takes column minima before their rows."""


def column_blocks(n: int) -> np.ndarray:
    """The bounds of :class:`_UpperTriangle`'s column blocks for n points, shape (blocks + 1,):
    about :data:`COLUMN_BLOCK` wide, each a multiple of :data:`CHUNK_ROWS` but the last."""
    blocks = max(1, round(n / COLUMN_BLOCK))
    width = math.ceil(math.ceil(n / blocks) / CHUNK_ROWS) * CHUNK_ROWS
    return np.append(np.arange(0, n, width), n)


class _UpperTriangle:
    """The upper block triangle of one cloud's Gram-form matrix, and its points' nearest neighbours.

    Parameters
    ----------
    Xc : torch.Tensor, shape (n, d), on the CPU
    sq : torch.Tensor, shape (n,)
        As for :func:`boruvka_triangle`.

    Column block K (columns ``k0:k1`` of :func:`column_blocks`) is stored as its rows ``0:k1``,
    one contiguous (k1, k1 - k0) array in one buffer: a pair across two blocks once, in the row of
    its lower-block end; within a diagonal block both ways (its diagonal ``inf``). Each vertex's
    nearest other vertex (``nearest``, (n,)) is found while the blocks are made, each block in
    cache: in the rows of a block (its row side) and in its columns, for the rows of the blocks
    before (:func:`_column_argmin`); ties to the lowest index.
    """

    def __init__(self, Xc: torch.Tensor, sq: torch.Tensor) -> None:
        n = Xc.shape[0]
        left, right = _augmented(Xc, sq)
        right = right.contiguous()
        bounds = column_blocks(n)
        self.start, self.stop = bounds[:-1], bounds[1:]
        self.width = self.stop - self.start
        self.offset = np.append(0, np.cumsum(self.stop * self.width))
        self.block_of = np.repeat(np.arange(len(self.width)), self.width)
        buffer = Xc.new_empty(int(self.offset[-1]))
        self.flat = buffer.numpy()
        self.blocks = []
        row_min = np.full((len(self.width), n), np.inf, dtype=self.flat.dtype)
        row_arg = np.zeros((len(self.width), n), dtype=np.int64)
        column_min = np.full(n, np.inf, dtype=self.flat.dtype)
        column_arg = np.zeros(n, dtype=np.int64)
        for K, (k0, k1) in enumerate(zip(self.start.tolist(), self.stop.tolist(), strict=True)):
            w = k1 - k0
            block = buffer[self.offset[K] : self.offset[K + 1]].view(k1, w)
            torch.mm(left[:k1], right[:, k0:k1], out=block)
            array = block.numpy()
            array.reshape(-1)[k0 * w :: w + 1] = np.inf  # a vertex is not its own neighbour
            arg = array.argmin(axis=1)
            row_arg[K, :k1] = arg + k0
            row_min[K, :k1] = array.reshape(-1)[np.arange(0, k1 * w, w) + arg]
            if k0:
                column_min[k0:k1], column_arg[k0:k1] = _column_argmin(block, k0)
            self.blocks.append(block)
        first = row_min.argmin(axis=0)  # the first block on ties: the lowest column
        index = np.arange(n)
        row_min, row_arg = row_min[first, index], row_arg[first, index]
        # Columns cover rows of earlier blocks only: lower indices, first on ties.
        self.nearest = np.where(column_min <= row_min, column_arg, row_arg)

    def entries(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """The stored entries at (rows, columns), NaN where the pair is stored the other way."""
        K = self.block_of[columns]
        stored = rows < self.stop[K]
        at = self.offset[K] + rows * self.width[K] + (columns - self.start[K])
        out = self.flat[np.where(stored, at, 0)]
        out[~stored] = np.nan
        return out

    def first_rows(self, rows: np.ndarray, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
        """For each of ``columns`` (k,), the first of ``rows`` (ascending) whose stored entry in it
        is its ``values`` entry (-1 if none): one gathered block of entries per column block, at
        most :data:`CHUNK_ELEMENTS` entries at a time."""
        out = np.full(len(columns), -1)
        K = self.block_of[columns]
        for k in np.unique(K).tolist():
            stored = rows[rows < self.stop[k]]
            block = self.blocks[k].numpy()
            picked = np.flatnonzero(K == k)
            step = max(1, CHUNK_ELEMENTS // max(len(stored), 1))
            for part in np.split(picked, np.arange(step, len(picked), step)):
                hit = block[stored[:, None], columns[part] - self.start[k]] == values[part]
                found = hit.any(axis=0)
                out[part[found]] = stored[hit.argmax(axis=0)[found]]
        return out

    def contract(self, component: np.ndarray, count: int) -> np.ndarray:
        """Minima (count, n) over each component's stored rows, column block by column block;
        ``inf`` where a component has no row in a block's rows."""
        group = torch.from_numpy(component)
        minima = torch.empty(count, len(component), dtype=self.blocks[0].dtype)
        for block, k0, k1 in zip(self.blocks, self.start.tolist(), self.stop.tolist(), strict=True):
            part = block.new_full((count, k1 - k0), math.inf)
            index = group[:k1, None].expand(block.shape)
            minima[:, k0:k1] = part.scatter_reduce_(0, index, block, "amin", include_self=True)
        return minima.numpy()


def _column_argmin(block: torch.Tensor, k0: int) -> tuple[np.ndarray, np.ndarray]:
    """The minimum of each column of ``block[:k0]`` (k0 a multiple of :data:`CHUNK_ROWS`) and its
    first row. The minima of chunks of rows first, in torch on all threads (NumPy's argmin along
    columns copies the block, its equality search takes 3x as long), then the rows of the chunk."""
    w = block.shape[1]
    chunks = block[:k0].view(k0 // CHUNK_ROWS, CHUNK_ROWS, w).amin(dim=1)
    rows = chunks.numpy().argmin(axis=0) * CHUNK_ROWS + np.arange(CHUNK_ROWS)[:, None]
    columns = np.arange(w)
    values = block.numpy()[rows, columns]
    first = values.argmin(axis=0)
    return values[first, columns], rows[first, columns]


PARALLEL_ENTRIES = 2**20
"""Matrices of at least this many entries have their row minima found on several threads."""


def _row_argmin(D2: np.ndarray) -> np.ndarray:
    """``D2.argmin(axis=1)``, slices of rows on torch's number of threads for large matrices.

    NumPy's reduction runs on one core, and releases the GIL while it does: on 2 cores a 3000 ×
    3000 matrix took 0.4 ms this way against 1.0 in one call (torch's ``argmin`` took 3.8).
    """
    workers = min(torch.get_num_threads(), 8)
    if workers == 1 or D2.size < PARALLEL_ENTRIES:
        return D2.argmin(axis=1)
    bounds = np.linspace(0, len(D2), workers + 1).astype(int)
    parts = _pool(os.getpid(), workers).map(
        lambda lo, hi: D2[lo:hi].argmin(axis=1), bounds[:-1], bounds[1:]
    )
    return np.concatenate(list(parts))


@functools.cache
def _pool(pid: int, workers: int) -> ThreadPoolExecutor:
    """One thread pool per process (a forked child gets its own: the parent's threads are not
    in it) and size."""
    return ThreadPoolExecutor(workers, thread_name_prefix="topo-monitor")


def nearest_forest(nearest: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The root of every vertex's tree in the graph of links ``v -> nearest[v]``, shape (m,).

    Each part of such a graph holds exactly one cycle. With symmetric weights and ties to the
    lowest index it is a mutual pair; but float32's Gram form rounds ``d(a, b)`` and ``d(b, a)``
    differently, and three points at near-equal distances (on a rotated triangular lattice, say)
    can link in a triangle, where pointer jumping to a fixed point never ends. The lowest vertex
    of each cycle is its root and its link is dropped; every other vertex keeps its link, an edge
    of a minimum spanning tree (within the search's rounding, for the links of a cycle).

    Pointer doubling, ⌈log₂ m⌉ vectorized rounds: after them every vertex has walked past the
    start of its cycle, and each vertex on a cycle has taken the minimum over all of it. NumPy
    arrays or torch tensors (on their device).
    """
    jump, low = nearest, _positions(nearest)  # jump is rebound, never written
    for _ in range(max(1, (len(nearest) - 1).bit_length())):
        low = low.clip(max=low[jump])  # the least of the first 2^(k+1) vertices of each walk
        jump = jump[jump]
    return low[jump]


def _positions(like: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """0, 1, ..., len(like) - 1, as an array of ``like``'s kind (and device)."""
    if isinstance(like, torch.Tensor):
        return torch.arange(len(like), device=like.device)
    return np.arange(len(like))


def _number(root: np.ndarray | torch.Tensor) -> tuple[np.ndarray | torch.Tensor, int]:
    """The trees of a forest given by each vertex's root (m,), numbered 0.. in the order of their
    roots: each vertex's tree (m,), and how many trees (a host synchronisation on a device)."""
    number = (root == _positions(root)).cumsum(0) - 1
    return number[root], int(number[-1]) + 1


def _contract(rows: np.ndarray, group: np.ndarray, count: int) -> np.ndarray:
    """Column-wise minima of ``rows`` (r, m) over the rows of each group (r,), shape (count, m).

    One pass over ``rows`` in memory order on torch's threads (:func:`_minima`), 1.9 ms for a
    3000 × 3000 matrix on 2 cores, where ``index_reduce_`` took 2.4 and reading each group's rows
    in turn 4.6.
    """
    return _minima(torch.from_numpy(rows), torch.from_numpy(group), count).numpy()


def _minima(rows: torch.Tensor, group: torch.Tensor, count: int) -> torch.Tensor:
    """:func:`_contract` on tensors: ``scatter_reduce_`` with the groups broadcast along the rows
    (a view, no r×m index in memory). Every group must have a row (all of the result is
    written)."""
    index = group[:, None].expand(rows.shape)
    minima = rows.new_empty(count, rows.shape[1])
    return minima.scatter_reduce_(0, index, rows, "amin", include_self=False)


def _prepare(
    X: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clouds ``X`` (..., n, d) made ready for a search in ``dtype``.

    Returns the clouds centred and scaled (..., n, d) and their squared norms (..., n), both in
    ``dtype``; and the largest squared norm of each centred cloud (...), in the work dtype and the
    cloud's own units: it sets the rounding bound of the search (:data:`GRAM_ROUNDING`).

    Centred in the cloud's own dtype: in float64 for a float64 cloud, whatever its offset; a
    float32 cloud's coordinates and their mean are both float32, so each difference is exact
    where the offset dominates (Sterbenz) and rounded relative to the centred value elsewhere.
    Then scaled by a power of two (exact) so that the largest norm lies in [1, 2): huge or tiny
    clouds keep float32's full precision and never overflow or underflow in its squares.
    """
    work = work_dtype(X.device)
    Xc = X - X.mean(dim=-2, keepdim=True)
    norms = torch.linalg.vector_norm(Xc, dim=-1, dtype=work)
    top = norms.amax(dim=-1, keepdim=True).clamp(min=torch.finfo(work).tiny)
    scale = torch.exp2(-torch.floor(torch.log2(top)))
    cloud = (Xc * scale[..., None].to(X.dtype)).to(dtype)
    return cloud, (norms * scale).square().to(dtype), top.squeeze(-1).square()


def prim_mst_from_points(X: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Minimum spanning tree of one cloud, without its distance matrix.

    Parameters
    ----------
    X : torch.Tensor, shape (n, d)
    dtype : torch.dtype, optional
        Precision of the search; default :func:`search_dtype` (float32 wherever it is exact to
        float32 rounding): float32 rows were measured 2.5× faster than float64 ones.

    Returns
    -------
    torch.Tensor, shape (n - 1, 2), int64, on ``X``'s device
        Edge ``v - 1`` is ``(v, parent of v)`` for v = 1..n-1, the tree rooted at vertex 0: the
        layout of :func:`prim_mst`'s edges. Only the tree: :func:`mst_tree` measures its edges.

    Prim's algorithm keeps, for every point outside the tree, its squared distance to the tree;
    each step adds the nearest point and computes its one row of squared distances, by the centred
    formula of :func:`squared_distances` on the cloud prepared as for the dense search (centred,
    scaled by a power of two). Memory is O(n·d) (the centred cloud, stored transposed)
    plus a few vectors of n; time O(n²·d), about half of which is saved by dropping the points
    already in the tree from the working copy of the cloud each time an eighth of it has joined.
    Ties are broken as in :func:`prim_mst` (lowest index first).
    """
    Xc, sq, _ = _prepare(X, search_dtype(X.device) if dtype is None else dtype)
    if X.device.type == "cpu":
        parent = torch.from_numpy(_prim_points_numpy(Xc.numpy(), sq.numpy()))
    else:
        parent = _prim_points_torch(Xc, sq)
    return torch.stack([torch.arange(1, len(parent), device=parent.device), parent[1:]], dim=1)


def _prim_points_torch(Xc: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    """:func:`prim_mst_from_points`' loop in torch, for accelerators: the parent of every vertex.

    ``Xc`` (n, d) is the centred cloud and ``sq`` (n,) its squared norms; returns shape (n,). The
    working copies hold the points not yet in the tree and those that joined since the last drop,
    whose key is ``-inf`` as in :func:`_prim`; ``alive`` maps them back to vertices. The host waits
    for the device only at the drops (``nonzero``).
    """
    n = Xc.shape[0]
    parent = torch.zeros(n, dtype=torch.long, device=Xc.device)
    cloud, alive = Xc.T.contiguous(), torch.arange(n, device=Xc.device)
    nearest = torch.zeros_like(parent)  # each point's nearest vertex in the tree
    best = torch.full_like(sq, math.inf)  # all equal: vertex 0 joins first
    joined = 0
    for _ in range(n):
        if 8 * joined >= len(best):
            keep = torch.nonzero(best != -math.inf).squeeze(1)
            cloud, sq, best, nearest, alive = (
                a[..., keep] for a in (cloud, sq, best, nearest, alive)
            )
            joined = 0
        j = best.abs().argmin(dim=0, keepdim=True)
        vertex = alive[j]
        parent.index_copy_(0, vertex, nearest[j])
        best.index_fill_(0, j, -math.inf)
        joined += 1
        row = torch.mv(cloud.T, -2 * cloud[:, j].squeeze(1)).add_(sq).add_(sq[j]).clamp_(min=0.0)
        nearest.masked_fill_(row < best, vertex.squeeze(0))
        torch.minimum(best, row, out=best)
    return parent


def _prim_points_numpy(Xc: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """:func:`_prim_points_torch` for the CPU: NumPy in place, a few microseconds per operation.

    The matrix-vector product alone goes through torch, on views of the same memory: with NumPy's
    ``dot`` (OpenBLAS, which starts threads of its own) a 20000-point run took 44 s instead of
    4.8 s on a loaded 2-core machine; torch's (MKL, on torch's thread pool) showed no such stalls.
    """
    n = Xc.shape[0]
    parent = np.zeros(n, dtype=np.int64)
    cloud, alive = np.ascontiguousarray(Xc.T), np.arange(n)
    nearest = np.zeros(n, dtype=np.int64)
    best = np.full(n, np.inf, dtype=Xc.dtype)
    row, key, closer = np.empty_like(best), np.empty_like(best), np.empty(n, dtype=bool)
    x = np.empty(Xc.shape[1], dtype=Xc.dtype)  # -2 × the point that joins
    cloud_t, row_t, x_t = torch.from_numpy(cloud).T, torch.from_numpy(row), torch.from_numpy(x)
    joined = 0
    for _ in range(n):
        if 8 * joined >= len(best):
            keep = np.flatnonzero(best != -np.inf)
            cloud, sq, best, nearest, alive = (
                a[..., keep] for a in (cloud, sq, best, nearest, alive)
            )
            row, key, closer = row[: len(keep)], key[: len(keep)], closer[: len(keep)]
            cloud_t, row_t = torch.from_numpy(cloud).T, torch.from_numpy(row)
            joined = 0
        np.abs(best, out=key)
        j = int(key.argmin())
        vertex = alive[j]
        parent[vertex] = nearest[j]
        best[j] = -np.inf
        joined += 1
        np.multiply(cloud[:, j], -2.0, out=x)
        torch.mv(cloud_t, x_t, out=row_t)
        row += sq
        row += sq[j]
        np.maximum(row, 0.0, out=row)
        np.less(row, best, out=closer)
        np.copyto(nearest, vertex, where=closer)
        np.minimum(best, row, out=best)
    return parent


def mst_tree(clouds: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum spanning trees of a few clouds, searched in float32 and measured in float64.

    Parameters
    ----------
    clouds : sequence of G tensors of shapes (n_g, d_g), on one device
        One chunk of :func:`chunks`: several clouds only if their distance matrices together hold
        at most :data:`CHUNK_ELEMENTS` entries.

    Returns
    -------
    edges : torch.Tensor, shape (G, max n_g - 1, 2), int64
        The n_g - 1 edges of cloud ``g``'s tree, as pairs of point indices in no particular order
        (:func:`boruvka_edges`' for one cloud or a few large ones on the CPU, :func:`prim_mst`'s
        ``(v, parent of v)`` for v = 1..n_g-1 for a batch there, :func:`boruvka_mst`'s on
        accelerators); rows beyond a smaller cloud's n_g - 1 are padding.
    lengths : torch.Tensor, shape (G, max n_g - 1), :func:`work_dtype`
        ``|x_i - x_j|`` of each edge, computed from the points (:func:`edge_lengths`); 0 on
        padding rows.

    Notes
    -----
    The search runs in :func:`search_dtype` (float32 on CPUs and GPUs): on the dense Gram-form
    squared distances of the prepared clouds, or, for a single cloud whose search would exceed
    :data:`DENSE_BYTES`, on rows computed as needed (:func:`prim_mst_from_points`). Each squared
    distance it compares is within ``Δ = GRAM_ROUNDING · 2⁻²⁴ · 2 max_i |x_i - mean|²`` of the exact
    one, so every edge it takes (the lightest across a cut, in Prim's loop as in Borůvka's rounds)
    is within 2Δ of the truly lightest across that cut. What can differ from an exact search is
    therefore only the tree, between edges whose squared lengths agree to 2Δ, and each such
    exchange costs at most float32's rounding:
    pairing every edge e of this tree with an edge of an exact MST no shorter than
    ``sqrt(l_e² - 2Δ)`` (the exchange property of spanning trees) gives

        E - E_min <= sum over the tree's edges of (l_e - sqrt(max(l_e² - 2Δ, 0))),

    about Δ / l_e per edge, and in practice far less (only actual near-ties exchange edges; on
    Gaussian clouds the float64 search finds the same tree). That bound is useless for an edge too
    short for float32 to see (*blind*, :data:`BLIND_FACTOR`), and near such edges:
    :func:`repair_blind` searches the neighbourhoods that they join again in the work dtype, and
    moves the edges that leave a neighbourhood to its exactly closest points (the same bound then
    holds there with float64's rounding, 2⁻⁵³ in place of 2⁻²⁴ in Δ).
    """
    device = clouds[0].device
    search, work = search_dtype(device), work_dtype(device)
    edges, top = _search(clouds, search)
    lengths = edge_lengths(clouds, edges)
    if search != work:
        repair_blind(clouds, edges, lengths, top)
    return edges, lengths


def repair_blind(
    clouds: Sequence[torch.Tensor], edges: torch.Tensor, lengths: torch.Tensor, top: torch.Tensor
) -> None:
    """Redo exactly the parts of float32 trees that float32 could not see; in place.

    Parameters
    ----------
    clouds : sequence of G tensors of shapes (n_g, d_g), on one device
    edges : torch.Tensor, shape (G, N - 1, 2), int64
        Their trees as found by the float32 search (:func:`mst_tree`); rewritten where repaired.
    lengths : torch.Tensor, shape (G, N - 1), :func:`work_dtype`
        The edges' lengths (:func:`edge_lengths`); rewritten with the edges.
    top : torch.Tensor, shape (G,)
        The largest squared norm of each centred cloud, which sets the search's rounding Δ.

    Notes
    -----
    A *neighbourhood* is a part of a tree joined by blind edges (squared length below
    :data:`BLIND_FACTOR` Δ); every point outside them is a neighbourhood of its own. Within one,
    the float32 tree may be far from minimal. Between them it is not: every pair of points
    leaving a neighbourhood is at least (BLIND_FACTOR - 2) Δ long (the tree path between them
    crosses a non-blind edge, and a tree edge is within 2Δ of the lightest across its cut). So:

    1. each neighbourhood of three points or more (not all duplicates, whose every tree has
       length 0) gets an exact tree of its own, searched in :func:`work_dtype` and centred on
       itself, small ones of mixed sizes padded into one batch (:func:`chunks`); its edges are no
       longer than the float32 tree's there;
    2. each other edge keeps the two neighbourhoods it joins, but its ends become the closest
       pair between them, measured exactly: where a neighbourhood's points are nearly equally far
       from the other end (near-duplicates), float32 could not choose among them.

    The result is a spanning tree in which every edge is again within 2Δ of the lightest across
    its cut, and nothing within a neighbourhood, nor which of its points an edge leaves it by, is
    left to float32's rounding. It costs little where few points are that close (the nearest
    pairs of a low-dimensional cloud, a few near-duplicates): measured on 2 cores, 3000 Gaussian
    points in d = 2 or 3 (a sixth of their tree's edges blind at d = 2) took 23-26 ms in all,
    against 52-59 ms when the whole cloud was searched again in float64 (``torch.cdist``: 15-18
    ms). Tight clusters far apart cost a float64 search of each cluster.
    """
    device = edges.device
    delta = GRAM_ROUNDING * 2.0**-24 * 2.0 * top
    size = torch.tensor([c.shape[0] for c in clouds], device=device)
    real = torch.arange(edges.shape[1], device=device) < size[:, None] - 1  # padding rows: no
    blind = (lengths.square() < BLIND_FACTOR * delta[:, None]) & real
    for g in torch.nonzero(blind.any(dim=1)).flatten().tolist():  # one host sync
        n = len(clouds[g])
        found = edges[g, : n - 1].cpu().numpy()
        hoods = _Neighbourhoods(
            found, lengths[g, : n - 1].cpu().numpy(), blind[g, : n - 1].cpu().numpy()
        )
        if not hoods.wide.any():
            continue  # duplicates only: every choice among them is exact
        tree = hoods.closest_ends(clouds[g], hoods.searched_trees(clouds[g], found))
        changed = np.flatnonzero((tree != found).any(axis=1))  # only these are measured again
        rows, ends = (torch.from_numpy(a).to(device) for a in (changed, tree[changed]))
        edges[g, rows] = ends
        lengths[g, rows] = pair_lengths(clouds[g], ends.reshape(-1))


PAIR_WINDOW = 2**20
"""Candidate pairs measured at a time where :func:`repair_blind` picks an edge's closest ends."""

GRAM_PAIRS = 2**14
"""An edge between neighbourhoods with more candidate pairs than this gets its closest ends from
a float64 matrix product (:func:`_closest_pair`), not by measuring every pair."""


class _Neighbourhoods:
    """The neighbourhoods of one float32 tree (:func:`repair_blind`), and the two repairs.

    Parameters
    ----------
    tree : numpy.ndarray, shape (n - 1, 2)
    lengths : numpy.ndarray, shape (n - 1,)
    blind : numpy.ndarray, shape (n - 1,), bool
    """

    def __init__(self, tree: np.ndarray, lengths: np.ndarray, blind: np.ndarray) -> None:
        from scipy.sparse import coo_array  # SciPy's sparse module loads only where needed
        from scipy.sparse.csgraph import connected_components

        n = len(tree) + 1
        self.blind = blind
        pairs = tree[self.blind]
        graph = coo_array((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        _, self.label = connected_components(graph, directed=False)
        self.size = np.bincount(self.label)
        longest = np.zeros(len(self.size))
        np.maximum.at(longest, self.label[pairs[:, 0]], lengths[self.blind])
        self.wide = longest > 0  # two points or more, not all duplicates
        self.members = np.argsort(self.label, kind="stable")  # one neighbourhood after another
        self.start = np.concatenate([[0], np.cumsum(self.size)[:-1]])

    def points(self, hoods: np.ndarray, k: int) -> np.ndarray:
        """The points of neighbourhoods ``hoods`` of at most ``k`` points each, shape
        (len(hoods), k), each row padded with its neighbourhood's last point."""
        step = np.minimum(np.arange(k), self.size[hoods][:, None] - 1)
        return self.members[self.start[hoods][:, None] + step]

    def searched_trees(self, cloud: torch.Tensor, tree: np.ndarray) -> np.ndarray:
        """``tree`` with an exact tree in each wide neighbourhood of three points or more."""
        hoods = np.flatnonzero(self.wide & (self.size >= 3))
        if len(hoods) == 0:
            return tree
        tree = tree.copy()
        # The tree spans each neighbourhood: its blind edges there, n_h - 1, are the ones replaced.
        inside = np.flatnonzero(self.blind & np.isin(self.label[tree[:, 0]], hoods))
        slots = inside[np.argsort(self.label[tree[inside, 0]], kind="stable")]
        hoods = hoods[np.argsort(-self.size[hoods], kind="stable")]  # as chunks() wants them
        found = {}
        for part in chunks(self.size[hoods].tolist()):
            group, k = hoods[part], int(self.size[hoods[part.start]])
            points, sizes = self.points(group, k), self.size[group]
            index = torch.from_numpy(points[np.arange(k) < sizes[:, None]]).to(cloud.device)
            members = torch.split(cloud[index], sizes.tolist())  # one gather, then views
            local = _search(members, work_dtype(cloud.device))[0].cpu().numpy()
            ends = np.take_along_axis(points, local.reshape(len(group), -1), 1)
            ends = ends.reshape(local.shape)
            found.update(
                (h, e[: m - 1]) for h, e, m in zip(group.tolist(), ends, sizes, strict=True)
            )
        tree[slots] = np.concatenate([found[h] for h in np.unique(self.label[tree[slots, 0]])])
        return tree

    def closest_ends(self, cloud: torch.Tensor, tree: np.ndarray) -> np.ndarray:
        """``tree`` with each non-blind edge that touches a wide neighbourhood moved to the
        closest pair of points of the two neighbourhoods it joins: by their exact lengths, a
        window of :data:`PAIR_WINDOW` pairs at a time, for the many small neighbourhoods; in
        float64 Gram form (:func:`_closest_pair`) between two large ones."""
        first, second = self.label[tree[:, 0]], self.label[tree[:, 1]]
        moved = np.flatnonzero(~self.blind & (self.wide[first] | self.wide[second]))
        if len(moved) == 0:
            return tree
        tree = tree.copy()
        large = self.size[first[moved]] * self.size[second[moved]] > GRAM_PAIRS
        for edge in moved[large]:
            tree[edge] = _closest_pair(cloud, *(self.points_of(h) for h in tree[edge]))
        moved = moved[~large]
        a, b = first[moved], second[moved]
        width = self.size[b]
        offset = np.concatenate([[0], np.cumsum(self.size[a] * width)])
        best = np.full(len(moved), np.inf)
        ends = tree[moved].copy()
        for low in range(0, int(offset[-1]), PAIR_WINDOW):
            pair = np.arange(low, min(int(offset[-1]), low + PAIR_WINDOW))
            edge = np.searchsorted(offset, pair, side="right") - 1
            step = pair - offset[edge]
            u = self.members[self.start[a[edge]] + step // width[edge]]
            v = self.members[self.start[b[edge]] + step % width[edge]]
            flat = torch.from_numpy(np.stack([u, v], axis=1).reshape(-1)).to(cloud.device)
            length = pair_lengths(cloud, flat).cpu().numpy()
            order = np.lexsort((length, edge))  # by edge, shortest first
            head = order[np.flatnonzero(np.diff(edge[order], prepend=-1))]
            better = length[head] < best[edge[head]]
            best[edge[head[better]]] = length[head[better]]
            ends[edge[head[better]]] = np.stack([u[head[better]], v[head[better]]], axis=1)
        tree[moved] = ends
        return tree

    def points_of(self, point: int) -> np.ndarray:
        """The points of the neighbourhood of ``point``."""
        hood = self.label[point]
        return self.members[self.start[hood] : self.start[hood] + self.size[hood]]


def _closest_pair(cloud: torch.Tensor, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The closest pair (shape (2,)) between rows ``first`` and rows ``second`` of ``cloud``, on
    squared distances in :func:`work_dtype`, Gram form, both sets centred on their joint mean:
    matrix products where measuring every pair would gather |first|·|second|·d coordinates. A
    block of rows of at most :data:`PAIR_WINDOW` pairs at a time; the lowest pair on ties."""
    work = work_dtype(cloud.device)
    x, y = (cloud[torch.from_numpy(p).to(cloud.device)].to(work) for p in (first, second))
    centre = torch.cat([x, y]).mean(dim=0)
    x, y = x - centre, y - centre
    x_sq, y_sq = (x * x).sum(dim=1), (y * y).sum(dim=1)
    best, pair = math.inf, (0, 0)
    step = max(1, PAIR_WINDOW // len(y))
    for low in range(0, len(x), step):
        block = torch.addmm(y_sq[None, :], x[low : low + step], y.T, alpha=-2.0)
        block += x_sq[low : low + step, None]
        at = int(block.argmin())
        value = float(block.view(-1)[at])
        if value < best:
            best, pair = value, (low + at // len(y), at % len(y))
    return np.array([first[pair[0]], second[pair[1]]])


def _search(
    clouds: Sequence[torch.Tensor], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The trees of :func:`mst_tree` found in ``dtype`` (edges (G, N - 1, 2)), and the clouds'
    largest squared norms (G,) after centring, for the rounding bound of that search."""
    n, device = max(c.shape[0] for c in clouds), clouds[0].device
    if len(clouds) == 1 and not dense_fits(n, dtype):
        return prim_mst_from_points(clouds[0], dtype)[None], _prepare(clouds[0], dtype)[2][None]
    if device.type == "cpu" and one_by_one(len(clouds), n):
        edges = torch.zeros(len(clouds), n - 1, 2, dtype=torch.long)
        top = clouds[0].new_empty(len(clouds), dtype=work_dtype(device))
        for g, points in enumerate(clouds):
            cloud, sq, top[g] = _prepare(points, dtype)
            edges[g, : len(points) - 1] = torch.from_numpy(_cloud_tree(cloud, sq))
        return edges, top
    shapes = by_shape(clouds)
    if len(shapes) == 1:  # one batched product, no padding
        batch = torch.stack(list(clouds)) if len(clouds) > 1 else clouds[0][None]
        cloud, sq, top = _prepare(batch, dtype)
        D2 = _gram(cloud, sq)
    else:
        D2 = clouds[0].new_full((len(clouds), n, n), math.inf, dtype=dtype)
        top = clouds[0].new_empty(len(clouds), dtype=work_dtype(device))
        for (m, _), members in shapes.items():
            cloud, sq, tops = _prepare(torch.stack([clouds[g] for g in members]), dtype)
            index = torch.tensor(members, device=D2.device)
            D2[index, :m, :m] = _gram(cloud, sq)
            top[index] = tops
    return (prim_mst(D2) if device.type == "cpu" else boruvka_mst(D2))[0], top


TRIANGLE_BYTES = 20 * 2**20
"""A cloud whose whole matrix would take more than this (bytes) is searched on its upper block
triangle (:func:`_cloud_tree`). Measured on 2 cores (32 MiB of L3, shared with other machines),
the triangle's time over the whole matrix's at d = 32-512: 1.03-1.38x at n = 1200-1600,
0.99-1.13x at n = 2000 (16 MB in float32), 0.78-0.97x at 2500 (25 MB), 0.77-0.9x at 3000 and
0.7-0.82x at 4500. What stays in cache between the passes decides, more than the arithmetic."""


def _cloud_tree(cloud: torch.Tensor, sq: torch.Tensor) -> np.ndarray:
    """The tree (n - 1, 2) of one prepared cloud (n, d) on the CPU.

    From the upper block triangle (:func:`boruvka_triangle`) where the whole matrix would take more
    than :data:`TRIANGLE_BYTES` and d >= :data:`NARROW_DIM`. Below that dimension writing the
    matrix is most of the cost, and the whole one made block by block with the first pass
    (:func:`_gram_nearest`) measured faster (0.75-0.95x at n = 3000, d = 2-16).
    """
    n, d = cloud.shape
    if d >= NARROW_DIM and n * n * cloud.element_size() > TRIANGLE_BYTES:
        return boruvka_triangle(cloud, sq)
    return boruvka_edges(*_gram_nearest(cloud, sq))


def dense_fits(n: int, dtype: torch.dtype) -> bool:
    """Whether the dense search of one cloud of ``n`` points in ``dtype`` fits :data:`DENSE_BYTES`:
    its n×n matrix and the row minima of its components (:func:`boruvka_edges` on the CPU,
    :func:`boruvka_mst` elsewhere), at most half as many again, since every component of the
    nearest-neighbour forest holds two points or more."""
    return 3 * n * n * dtype.itemsize <= 2 * DENSE_BYTES


def edge_lengths(clouds: Sequence[torch.Tensor], edges: torch.Tensor) -> torch.Tensor:
    """Euclidean lengths of tree edges, ``|x_i - x_j|`` from the points, in :func:`work_dtype`.

    Parameters
    ----------
    clouds : sequence of G tensors of shapes (n_g, d_g), on one device
    edges : torch.Tensor, shape (G, N - 1, 2), int64
        As returned by :func:`mst_tree` (rows beyond n_g - 1 are ignored).

    Returns
    -------
    torch.Tensor, shape (G, N - 1)
        0 on padding rows. Differences of the points themselves, not the Gram form: duplicate
        points give exactly 0 and no cancellation enters. Gathered a slice of edges at a time
        (:data:`EDGE_CHUNK` coordinates): no copy of a large cloud in float64, and temporaries
        small enough to stay in cache (and in the allocator's reuse, where large ones are
        mapped and unmapped at every call: 4 MB slices cost 1.5 ms at n = 1000, d = 512).
    """
    work = work_dtype(edges.device)
    out = torch.zeros(edges.shape[:2], dtype=work, device=edges.device)
    for (n, _), rows in by_shape(clouds).items():
        # The clouds of one shape as one table of points, each edge's ends as row numbers in it:
        # plain row gathers (index_select), not a 3-index gather.
        points = torch.cat([clouds[g] for g in rows]) if len(rows) > 1 else clouds[rows[0]]
        index = torch.tensor(rows, device=edges.device)
        offset = n * torch.arange(len(rows), device=edges.device)[:, None, None]
        ends = (edges[index, : n - 1] + offset).reshape(-1)  # both ends of each edge, in turn
        out[index, : n - 1] = pair_lengths(points, ends).reshape(len(rows), n - 1)
    return out


def pair_lengths(points: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """``|x_i - x_j|`` in :func:`work_dtype` for pairs of rows of ``points`` (m, d), given as
    ``ends`` (2P,): i₀, j₀, i₁, j₁, ...; shape (P,). A slice of :data:`EDGE_CHUNK` coordinates at
    a time (:func:`edge_lengths`)."""
    work, pairs = work_dtype(points.device), ends.reshape(-1, 2)
    lengths = torch.empty(len(pairs), dtype=work, device=points.device)
    step = max(1, EDGE_CHUNK // max(points.shape[1], 1))
    for start in range(0, len(pairs), step):
        part = pairs[start : start + step]
        # One endpoint widened, the other promoted by the subtraction: the difference of two
        # float32 numbers is exact in float64, with one float64 temporary fewer.
        diff = points.index_select(0, part[:, 0]).to(work) - points.index_select(0, part[:, 1])
        torch.linalg.vector_norm(diff, dim=-1, out=lengths[start : start + len(part)])
    return lengths


def mst_edges(clouds: Sequence[torch.Tensor]) -> torch.Tensor:
    """The trees of :func:`mst_tree`, without their lengths: shape (G, max n_g - 1, 2), int64."""
    return mst_tree(clouds)[0]


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
    shapes = by_shape(clouds)
    if len(shapes) == 1:  # one batched product, no padding
        return squared_distances(torch.stack(list(clouds)))
    N = max(c.shape[0] for c in clouds)
    out = clouds[0].new_full((len(clouds), N, N), padding)
    for (n, _), members in shapes.items():
        batch = torch.stack([clouds[g] for g in members]).to(out.dtype)
        out[torch.tensor(members, device=out.device), :n, :n] = squared_distances(batch)
    return out


def by_shape(clouds: Sequence[torch.Tensor]) -> dict[tuple[int, ...], list[int]]:
    """Positions of the clouds of each shape: those can go through batched tensor operations."""
    shapes: dict[tuple[int, ...], list[int]] = {}
    for g, cloud in enumerate(clouds):
        shapes.setdefault(tuple(cloud.shape), []).append(g)
    return shapes


def subcloud_mst_lengths(
    D2: torch.Tensor, source: np.ndarray, sizes: np.ndarray, points: torch.Tensor | None = None
) -> np.ndarray:
    """MST lengths of many sub-clouds of a few clouds, batched by size.

    Parameters
    ----------
    D2 : torch.Tensor, shape (G, N, N)
        Squared distances of G clouds (see :func:`stacked_squared_distances`).
    source : numpy.ndarray, shape (B,), int
        Which cloud each sub-cloud is taken from.
    sizes : numpy.ndarray, shape (B,), int
        How many points each sub-cloud has.
    points : torch.Tensor, shape (B, m), int64, optional
        Sub-cloud ``b`` is the points ``points[b, :sizes[b]]`` of its cloud (``m >= max(sizes)``).
        Default: its first ``sizes[b]`` points.

    Returns
    -------
    numpy.ndarray, shape (B,)
    """
    out = np.zeros(len(sizes))
    order = np.argsort(-sizes, kind="stable")
    for part in chunks(sizes[order].tolist()):
        members = order[part]
        m = int(sizes[members[0]])
        clouds = torch.from_numpy(source[members]).to(D2.device)
        if points is None:
            sub = D2[clouds, :m, :m]
        else:
            # Rows first, then columns: two plain gathers, faster than one 3-index gather. The
            # (rows, m, N) intermediate is built a few sub-clouds at a time to bound its memory.
            idx = points[torch.from_numpy(members).to(points.device), :m]
            sub = D2.new_empty(len(members), m, m)
            step = max(1, CHUNK_ELEMENTS // (m * D2.shape[-1]))
            for start in range(0, len(members), step):
                part_idx = idx[start : start + step]
                rows = D2[clouds[start : start + step, None], part_idx]
                sub[start : start + step] = rows.gather(2, part_idx[:, None, :].expand(-1, m, -1))
        short = (
            torch.arange(m, device=D2.device)
            >= torch.from_numpy(sizes[members]).to(D2.device)[:, None]
        )
        if bool(short.any()):
            sub.masked_fill_(short[:, :, None] | short[:, None, :], math.inf)
        out[members] = mst_lengths(sub).cpu().numpy()
    return out


SMALL_CHUNK = 2**16
"""Padded entries up to which a chunk of :func:`chunks` takes clouds of any smaller size.

Prim's loop costs about 3 µs per step and 2 ns per entry and step (measured on 2 cores), and a
search call some hundreds of µs: clouds of a few points each, of mixed sizes (the neighbourhoods
that :func:`repair_blind` redoes, the classes of a probe with many classes) are cheaper padded
into one call than searched one size at a time.
"""


def chunks(sizes: Sequence[int], limit: int = CHUNK_ELEMENTS, fill: float = 0.9) -> list[slice]:
    """Split items of descending sizes into runs of one batched Prim call each.

    A chunk's ``count * max(size)**2`` stays within ``limit`` (memory), and an item joins a
    chunk only if it is at least ``fill`` times the chunk's largest size (padding a small cloud
    up to a large one costs as much as the large one), or if the chunk is small
    (:data:`SMALL_CHUNK`).
    """
    out, start = [], 0
    while start < len(sizes):
        stop, m = start + 1, sizes[start]
        while stop < len(sizes) and (stop + 1 - start) * m**2 <= limit:
            if sizes[stop] < fill * m and (stop + 1 - start) * m**2 > SMALL_CHUNK:
                break
            stop += 1
        out.append(slice(start, stop))
        start = stop
    return out
