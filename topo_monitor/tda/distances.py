"""Distances between persistence diagrams: sliced Wasserstein (Carrière, Cuturi, Oudot 2017).

Values equal gudhi's ``gudhi.representations.SlicedWassersteinDistance(num_directions=M)``: the same
``M - 1`` lines (``linspace(-π/2, π/2, M, endpoint=False)[:-1]``), the same diagonal projections,
the same mean over lines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from topo_monitor._validation import as_diagram

__all__ = ["paired_distances", "sliced_wasserstein", "sliced_wasserstein_matrix"]

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


def _sw_batch(
    a: Sequence[tuple[np.ndarray, np.ndarray]], b: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """SW distances of the projected diagram pairs (a[i], b[i]), in one sort.

    Each diagram is completed with the other's diagonal projections, so both sides of a pair
    have the same number of points. Pairs are padded to a common length with zeros on *both*
    sides: in one dimension the summed distance between sorted samples is the integral of the
    difference of their counting functions, which a point added to both samples leaves as it is.
    """
    sides_a = [np.concatenate([pa, db], axis=1) for (pa, _), (_, db) in zip(a, b, strict=True)]
    sides_b = [np.concatenate([pb, da], axis=1) for (_, da), (pb, _) in zip(a, b, strict=True)]
    width = max((side.shape[1] for side in sides_a), default=0)
    stacked = np.zeros((2, len(sides_a), a[0][0].shape[0] if a else 0, width))
    for i, (side_a, side_b) in enumerate(zip(sides_a, sides_b, strict=True)):
        stacked[0, i, :, : side_a.shape[1]] = side_a
        stacked[1, i, :, : side_b.shape[1]] = side_b
    stacked.sort(axis=3)
    return np.abs(stacked[0] - stacked[1]).sum(axis=2).mean(axis=1)


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
    return float(
        paired_distances([bars_a], [bars_b], num_directions, names=("bars_a", "bars_b"))[0]
    )


def paired_distances(
    diagrams_a: Sequence[DiagramLike],
    diagrams_b: Sequence[DiagramLike],
    num_directions: int = 50,
    names: tuple[str, str] = ("diagrams_a", "diagrams_b"),
) -> np.ndarray:
    """Sliced-Wasserstein distance of each pair ``(diagrams_a[i], diagrams_b[i])``, batched.

    Parameters
    ----------
    diagrams_a, diagrams_b : sequences of P array-likes, each of shape (k_i, 2)
        Finite bars, death >= birth, e.g. the same blocks' diagrams at two epochs.
    num_directions : int, default 50
    names : (str, str)
        How errors name the two sequences.

    Returns
    -------
    numpy.ndarray, shape (P,)
    """
    if len(diagrams_a) != len(diagrams_b):
        raise ValueError(
            f"{names[0]} and {names[1]} must pair up, got {len(diagrams_a)} and {len(diagrams_b)}"
        )
    lines = _lines(num_directions)
    projected = [
        [
            _projections(as_diagram(d, f"{name}[{i}]" if len(seq) > 1 else name), lines)
            for i, d in enumerate(seq)
        ]
        for seq, name in ((diagrams_a, names[0]), (diagrams_b, names[1]))
    ]
    return _sw_batch(*projected) if diagrams_a else np.zeros(0)


def sliced_wasserstein_matrix(
    diagrams: Sequence[DiagramLike], num_directions: int = 50
) -> np.ndarray:
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
    for i in range(L - 1):  # one batch per row: memory grows with L, not L²
        out[i, i + 1 :] = out[i + 1 :, i] = _sw_batch(
            [projected[i]] * (L - 1 - i), projected[i + 1 :]
        )
    return out
