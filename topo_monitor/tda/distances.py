"""Distances between persistence diagrams: sliced Wasserstein (Carrière, Cuturi, Oudot 2017).

Values equal gudhi's ``gudhi.representations.SlicedWassersteinDistance(num_directions=M)``: the same
``M - 1`` lines (``linspace(-π/2, π/2, M, endpoint=False)[:-1]``), the same diagonal projections,
the same mean over lines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from topo_monitor._validation import as_diagram

__all__ = ["distance_matrix", "sliced_wasserstein"]

DiagramLike = np.ndarray | Sequence[Sequence[float]]


def _lines(num_directions: int) -> np.ndarray:
    if not isinstance(num_directions, (int, np.integer)) or num_directions < 2:
        raise ValueError(
            f"num_directions must be an int >= 2 (gudhi's convention uses num_directions - 1 "
            f"lines), got {num_directions!r}"
        )
    thetas = np.linspace(-np.pi / 2, np.pi / 2, num=int(num_directions), endpoint=False)[:-1]
    return np.stack([np.cos(thetas), np.sin(thetas)])  # (2, M - 1)


def _projections(diagram: np.ndarray, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projections of a diagram's points and of their diagonal projections onto the lines,
    each of shape (lines, k): sorting runs along the last, contiguous axis."""
    diagonal = np.repeat(diagram.sum(axis=1, keepdims=True) / 2, 2, axis=1)
    return lines.T @ diagram.T, lines.T @ diagonal.T


def _sw_from_projections(
    points_a: np.ndarray, diag_a: np.ndarray, points_b: np.ndarray, diag_b: np.ndarray
) -> float:
    """SW distance of two projected diagrams, each array of shape (lines, k).

    Each diagram is completed with the other's diagonal projections, so both sides have the
    same number of points.
    """
    sorted_a = np.concatenate([points_a, diag_b], axis=1)
    sorted_b = np.concatenate([points_b, diag_a], axis=1)
    sorted_a.sort(axis=1)
    sorted_b.sort(axis=1)
    sorted_a -= sorted_b
    return float(np.abs(sorted_a, out=sorted_a).sum(axis=1).mean())


def sliced_wasserstein(bars_a: DiagramLike, bars_b: DiagramLike, num_directions: int = 50) -> float:
    """Sliced-Wasserstein distance between two persistence diagrams.

    Parameters
    ----------
    bars_a, bars_b : array-like, shape (k, 2) and (l, 2)
        Finite (birth, death) pairs of one homology dimension each, e.g. ``barcode(X)[0]``;
        either may be empty. Infinite bars must be dropped first.
    num_directions : int, default 50
        As in gudhi: ``num_directions - 1`` lines evenly spaced in [-π/2, π/2).

    Returns
    -------
    float
        Each diagram is completed with the diagonal projections of the other's points, both are
        projected on every line, and the L1 distance between the sorted projections is averaged
        over the lines.

    Raises
    ------
    ValueError
        If either is not one diagram of finite bars with death >= birth (:func:`barcode`'s
        whole result is a list of diagrams), or ``num_directions`` is not an int >= 2.
    """
    lines = _lines(num_directions)
    return _sw_from_projections(
        *_projections(as_diagram(bars_a, "bars_a"), lines),
        *_projections(as_diagram(bars_b, "bars_b"), lines),
    )


def distance_matrix(diagrams: Sequence[DiagramLike], num_directions: int = 50) -> np.ndarray:
    """Sliced-Wasserstein distances between every pair of diagrams (e.g. the blocks of a network).

    Parameters
    ----------
    diagrams : sequence of L array-likes, each of shape (k_i, 2)
        One diagram each (finite bars, death >= birth), e.g. the H0 diagrams of L clouds.
    num_directions : int, default 50

    Returns
    -------
    numpy.ndarray, shape (L, L)
        Symmetric with a zero diagonal. Each diagram is projected once.
    """
    lines = _lines(num_directions)
    projected = [
        _projections(as_diagram(d, f"diagrams[{i}]"), lines) for i, d in enumerate(diagrams)
    ]
    L = len(projected)
    out = np.zeros((L, L))
    for i in range(L):
        for j in range(i + 1, L):
            out[i, j] = out[j, i] = _sw_from_projections(*projected[i], *projected[j])
    return out
