"""Topology of a network's functional graph (Corneanu et al., CVPR 2019 and 2020).

Nodes are neurons; the edge between two neurons is weighted by how strongly their activations
correlate over a set of inputs, as the distance ``1 - |ρ|`` (Pearson ρ). Edges enter from strong
to weak correlation, and the clique (flag) complex of the graph at each stage is filtered: the
Vietoris–Rips filtration of the distance matrix. Its persistence gives Betti curves β_k — the
number of k-dimensional cavities alive at a threshold, or at an *edge density* (the fraction of
neuron pairs whose edge has entered, the x-axis of Corneanu's figures) — and per dimension the
summaries of the 2020 paper: number of bars, average life, average midlife, and where β_k peaks.

Cost grows like the number of 3-simplices, ~m⁴/24 for m neurons (gudhi's Ripser fork handles
them implicitly, see :func:`~topo_monitor.tda.persistence.flag_bars`): neurons are sampled
(up to ``max_neurons``, stratified across blocks, with a private generator).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from topo_monitor._validation import check, is_positive_int
from topo_monitor.tda.persistence import flag_bars
from topo_monitor.tda.sampling import Generatorish, as_generator, random_orders

__all__ = [
    "CONSTANT_RTOL",
    "DENSITY_GRID",
    "FUNCTIONAL_SUMMARIES",
    "THRESHOLD_GRID",
    "FunctionalTopology",
    "betti_curve",
    "correlation_distances",
    "edge_density",
    "functional_topology",
    "stratified_quotas",
]

FUNCTIONAL_SUMMARIES = ("bars", "life", "midlife", "peak_density")
"""Per homology dimension k: the number of bars of H_k, their average life (death − birth) and
midlife ((birth + death) / 2) in units of ``1 - |ρ|``, and the edge density at which β_k peaks."""

DENSITY_GRID = np.linspace(0.0, 1.0, 101)
"""Edge densities at which Betti curves are sampled (steps of 1 %)."""

THRESHOLD_GRID = np.linspace(0.0, 1.0, 101)
"""Thresholds on ``1 - |ρ|`` at which Betti curves are sampled (the distance lies in [0, 1])."""

CONSTANT_RTOL = 1e-6
"""A neuron whose standard deviation over the inputs is at most this fraction of its RMS value
is constant (a dead ReLU, a saturated unit): its correlation is undefined, float32 rounding
would decide it, so it is left out of the graph and counted."""


@dataclass(frozen=True)
class FunctionalTopology:
    """The persistent homology of one functional graph, and its summaries.

    Attributes
    ----------
    diagrams : list of numpy.ndarray, each of shape (k_i, 2)
        ``diagrams[i - 1]``: the (birth, death) pairs of H_i, i = 1..max_dim, in units of
        ``1 - |ρ|``. All are finite: at the end of the filtration the graph is complete and
        its flag complex is a simplex.
    neurons : numpy.ndarray, shape (m, 2), int
        (block, column) of each node of the graph, in the order of the distance matrix.
    n_constant : int
        Constant neurons left out (over every block, before sampling).
    betti_density : numpy.ndarray, shape (max_dim, len(DENSITY_GRID))
        β_i at each edge density of :data:`DENSITY_GRID` (row i - 1 for H_i).
    betti_threshold : numpy.ndarray, shape (max_dim, len(THRESHOLD_GRID))
        β_i at each threshold of :data:`THRESHOLD_GRID`.
    summaries : dict[str, float]
        ``"<summary>_H<i>"`` for every summary of :data:`FUNCTIONAL_SUMMARIES` and i = 1..max_dim.
        With no bar in H_i, ``bars_H<i>`` is 0 and the others are NaN.
    reason : str or None
        Why nothing could be computed (fewer than two usable neurons): then the diagrams are
        empty, the curves and summaries NaN.
    """

    diagrams: list[np.ndarray]
    neurons: np.ndarray
    n_constant: int
    betti_density: np.ndarray
    betti_threshold: np.ndarray
    summaries: dict[str, float]
    reason: str | None = None


def constant_neurons(A: torch.Tensor) -> torch.Tensor:
    """Mask of shape (N,): the columns of ``A`` (n, N) that are constant (see CONSTANT_RTOL)."""
    A = A.double()
    std = A.std(dim=0, correction=0)
    rms = A.square().mean(dim=0).sqrt()
    return std <= CONSTANT_RTOL * rms


def correlation_distances(A: torch.Tensor | np.ndarray) -> np.ndarray:
    """The functional graph's distances ``1 - |ρ_ij|`` between the columns of ``A``.

    Parameters
    ----------
    A : torch.Tensor or numpy.ndarray, shape (n_inputs, m)
        Column j holds neuron j's activation on every input. No column may be constant
        (:func:`functional_topology` leaves them out first).

    Returns
    -------
    numpy.ndarray, shape (m, m), float64
        Symmetric, zero on the diagonal, in [0, 1]: 0 for perfectly (anti-)correlated neurons,
        1 for uncorrelated ones. The sign of ρ is dropped, as in Corneanu et al.

    Raises
    ------
    ValueError
        If ``A`` is not 2-D with at least two rows, or holds NaN/Inf or a constant column.
    """
    A = torch.as_tensor(A).detach().double().cpu()
    check(A.dim() == 2 and A.shape[0] >= 2, f"A must have shape (n >= 2, m), got {tuple(A.shape)}")
    check(bool(torch.isfinite(A).all()), "A holds NaN or infinite values")
    constant = torch.nonzero(constant_neurons(A)).flatten().tolist()
    check(
        not constant, f"columns {constant[:10]} of A are constant: their correlation is undefined"
    )
    Z = A - A.mean(dim=0)
    Z = Z / torch.linalg.vector_norm(Z, dim=0)
    rho = (Z.T @ Z).abs().clamp(max=1.0)
    distances = (1.0 - (rho + rho.T) / 2).numpy()
    np.fill_diagonal(distances, 0.0)
    return distances


def edge_density(distances: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The fraction of the m(m-1)/2 neuron pairs whose edge has entered at each threshold.

    Parameters
    ----------
    distances : numpy.ndarray, shape (m, m), m >= 2
    thresholds : numpy.ndarray, shape (G,)

    Returns
    -------
    numpy.ndarray, shape (G,)
        ``#{i < j : distances[i, j] <= t} / (m(m-1)/2)`` for each t.
    """
    edges = np.sort(distances[np.triu_indices(len(distances), k=1)])
    return np.searchsorted(edges, thresholds, side="right") / len(edges)


def _density_thresholds(distances: np.ndarray, densities: np.ndarray) -> np.ndarray:
    """The threshold at which the edge density first reaches each density: the length of the
    ⌈q·P⌉-th shortest of the P edges (-inf at density 0: no edge yet)."""
    edges = np.sort(distances[np.triu_indices(len(distances), k=1)])
    # round first: 0.07 * 100 is 7.000000000000001 in floating point, whose ceiling is 8
    ranks = np.ceil(np.round(densities * len(edges), 9)).astype(np.int64)
    return np.where(ranks > 0, edges[np.maximum(ranks, 1) - 1], -math.inf)


def betti_curve(bars: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """β(t) = the number of bars alive at each threshold t, i.e. with birth <= t < death.

    Parameters
    ----------
    bars : numpy.ndarray, shape (k, 2)
        One homology dimension's (birth, death) pairs.
    thresholds : numpy.ndarray, shape (G,)

    Returns
    -------
    numpy.ndarray, shape (G,), int64
    """
    t = np.asarray(thresholds, dtype=np.float64)[:, None]
    return ((bars[:, 0] <= t) & (t < bars[:, 1])).sum(axis=1)


def _summaries(bars: np.ndarray, distances: np.ndarray) -> tuple[float, float, float, float]:
    """Number of bars, average life, average midlife, and the edge density at which β first
    reaches its maximum (exact: β only rises at births)."""
    if len(bars) == 0:
        return 0.0, math.nan, math.nan, math.nan
    births = np.unique(bars[:, 0])
    peak = births[int(np.argmax(betti_curve(bars, births)))]
    return (
        float(len(bars)),
        float(np.mean(bars[:, 1] - bars[:, 0])),
        float(np.mean((bars[:, 0] + bars[:, 1]) / 2)),
        float(edge_density(distances, np.array([peak]))[0]),
    )


def stratified_quotas(counts: Sequence[int], total: int) -> list[int]:
    """How many of ``total`` neurons to draw from each block: as evenly as the blocks allow.

    Blocks with fewer neurons than their share give all of them, and what they leave goes to
    the others (water-filling); with ``sum(counts) <= total`` every neuron is taken.

    Parameters
    ----------
    counts : sequence of B ints
        Usable neurons per block.
    total : int

    Returns
    -------
    list of B ints, each at most its count, summing to ``min(total, sum(counts))``; two blocks
    that are not exhausted differ by at most one.
    """
    quotas = [0] * len(counts)
    remaining = total
    order = sorted(range(len(counts)), key=lambda b: counts[b])
    for i, b in enumerate(order):
        quotas[b] = min(counts[b], remaining // (len(order) - i))
        remaining -= quotas[b]
    return quotas


def functional_topology(
    blocks: Sequence[torch.Tensor | np.ndarray],
    max_neurons: int | None = None,
    generator: Generatorish = None,
    max_dim: int = 2,
) -> FunctionalTopology:
    """Persistent homology of the functional graph of a network's neurons.

    Parameters
    ----------
    blocks : sequence of torch.Tensor or numpy.ndarray, shapes (n_inputs, C_b)
        One activation matrix per block; row i of every matrix is input i, so the neurons of
        all blocks are correlated over the same inputs (pass ``[A]`` for one matrix).
    max_neurons : int, optional
        Cap on the graph's nodes. With more usable neurons, a uniform random subset is drawn in
        each block, as evenly across blocks as they allow (:func:`stratified_quotas`). None:
        every neuron.
    generator : torch.Generator, numpy.random.Generator or int, optional
        Source of randomness for the neuron draw (an int is a seed). Never the global RNG.
    max_dim : {1, 2}
        Highest homology dimension. H2 needs the 3-simplices: ~m⁴/24 of them.

    Returns
    -------
    FunctionalTopology
        Constant neurons (:data:`CONSTANT_RTOL`) are left out before the draw and counted.

    Raises
    ------
    ValueError
        On matrices of different numbers of rows, fewer than two rows, NaN/Inf, a bad
        ``max_neurons`` or ``max_dim``.
    """
    check(max_dim in (1, 2), f"max_dim must be 1 or 2, got {max_dim!r}")
    check(
        max_neurons is None or (is_positive_int(max_neurons) and max_neurons >= 2),
        f"max_neurons must be an int >= 2 or None, got {max_neurons!r}",
    )
    matrices = [torch.as_tensor(X).detach().double().cpu() for X in blocks]
    check(
        len(matrices) > 0 and all(X.dim() == 2 for X in matrices),
        "blocks must be a non-empty sequence of 2-D (n_inputs, neurons) matrices",
    )
    rows = {X.shape[0] for X in matrices}
    check(len(rows) == 1, f"every block must hold the same inputs, got row counts {sorted(rows)}")
    check(rows.pop() >= 2, "the correlation of neurons needs at least two inputs")
    check(all(bool(torch.isfinite(X).all()) for X in matrices), "activations hold NaN or Inf")

    usable = [torch.nonzero(~constant_neurons(X)).flatten() for X in matrices]
    n_constant = sum(X.shape[1] for X in matrices) - sum(len(u) for u in usable)
    counts = [len(u) for u in usable]
    quotas = stratified_quotas(counts, sum(counts) if max_neurons is None else max_neurons)
    if sum(counts) > sum(quotas):
        orders = random_orders(counts, max(quotas), as_generator(generator))
        usable = [u[orders[b, : quotas[b]].sort().values] for b, u in enumerate(usable)]
    neurons = np.array(
        [(b, int(c)) for b, u in enumerate(usable) for c in u], dtype=np.int64
    ).reshape(-1, 2)
    if len(neurons) < 2:
        return FunctionalTopology(
            diagrams=[np.empty((0, 2)) for _ in range(max_dim)],
            neurons=neurons,
            n_constant=n_constant,
            betti_density=np.full((max_dim, len(DENSITY_GRID)), math.nan),
            betti_threshold=np.full((max_dim, len(THRESHOLD_GRID)), math.nan),
            summaries={
                f"{s}_H{i}": math.nan for i in range(1, max_dim + 1) for s in FUNCTIONAL_SUMMARIES
            },
            reason=f"the functional graph needs two neurons that are not constant, "
            f"got {len(neurons)} ({n_constant} constant)",
        )
    A = torch.cat([X[:, u] for X, u in zip(matrices, usable, strict=True)], dim=1)
    distances = correlation_distances(A)
    diagrams = flag_bars(distances, max_dim)
    at_density = _density_thresholds(distances, DENSITY_GRID)
    summaries = {}
    for i, bars in enumerate(diagrams, start=1):
        for name, value in zip(FUNCTIONAL_SUMMARIES, _summaries(bars, distances), strict=True):
            summaries[f"{name}_H{i}"] = value
    return FunctionalTopology(
        diagrams=diagrams,
        neurons=neurons,
        n_constant=n_constant,
        betti_density=np.array([betti_curve(bars, at_density) for bars in diagrams]),
        betti_threshold=np.array([betti_curve(bars, THRESHOLD_GRID) for bars in diagrams]),
        summaries=summaries,
    )
