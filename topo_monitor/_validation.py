"""Input checks and randomness shared by the mathematical modules (no Lightning here)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

Generatorish = torch.Generator | np.random.Generator | int | None


def check(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``: argument validation in one line."""
    if not condition:
        raise ValueError(message)


def is_positive_int(value: object) -> bool:
    """An int (not a bool) of at least 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def as_cloud(X: torch.Tensor | np.ndarray, name: str = "X") -> torch.Tensor:
    """A point cloud as a floating-point tensor of shape (n, d), n >= 1, with finite values.

    NumPy input becomes a CPU tensor; a tensor keeps its device. Integer and half-precision input is
    promoted to float32.
    """
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(X)
    elif not isinstance(X, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(X).__name__}")
    X = X.detach()
    if X.dim() != 2:
        raise ValueError(
            f"{name} must be a 2-D point cloud of shape (n_points, n_features), "
            f"got shape {tuple(X.shape)}"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has no points (shape {tuple(X.shape)})")
    if X.shape[1] == 0:
        raise ValueError(f"{name} has points with no coordinates (shape {tuple(X.shape)})")
    if X.dtype not in (torch.float32, torch.float64):
        X = X.float()
    if not bool(torch.isfinite(X).all()):
        bad = int((~torch.isfinite(X)).any(dim=1).sum())
        raise ValueError(f"{name} holds NaN or infinite values ({bad} of {X.shape[0]} points)")
    return X


def as_diagram(bars: np.ndarray | torch.Tensor | Sequence[Sequence[float]]) -> np.ndarray:
    """A persistence diagram as a float64 array of shape (k, 2) of finite (birth, death) pairs."""
    if isinstance(bars, torch.Tensor):
        bars = bars.detach().cpu().numpy()
    arr = np.asarray(bars, dtype=np.float64)
    if arr.size == 0:
        return np.empty((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(
            f"a persistence diagram must have shape (k, 2) of (birth, death) pairs, "
            f"got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(
            "the diagram holds infinite or NaN values: drop infinite bars first "
            "(topo_monitor.persistence.barcode returns finite bars only)"
        )
    return arr


def as_generator(generator: Generatorish) -> torch.Generator | np.random.Generator:
    """A private random generator: an int is a seed, ``None`` means seed 0.

    Results are reproducible and the global RNG streams (those training draws from) stay untouched.
    Convert once per public call: seeding again for every draw would repeat the same draw.
    """
    if isinstance(generator, (torch.Generator, np.random.Generator)):
        return generator
    if generator is None or isinstance(generator, (int, np.integer)):
        return torch.Generator().manual_seed(0 if generator is None else int(generator))
    raise TypeError(
        "generator must be a torch.Generator, numpy.random.Generator, int seed or None, "
        f"got {type(generator).__name__}"
    )


def random_orders(
    counts: Sequence[int], length: int, generator: torch.Generator | np.random.Generator
) -> torch.Tensor:
    """Uniformly random orderings of several index ranges, all drawn at once.

    Parameters
    ----------
    counts : sequence of R ints
        Row ``r`` orders ``range(counts[r])``.
    length : int
        How many leading indices of each ordering to keep, at most ``max(counts)``. The first
        ``k <= counts[r]`` of row ``r`` are a uniform random subsample of size ``k``; positions
        from ``counts[r]`` on hold the indices ``counts[r], ..., max(counts) - 1`` (padding of
        clouds stacked to the largest, see :func:`topo_monitor.persistence.subcloud_mst_lengths`).
    generator : torch.Generator or numpy.random.Generator

    Returns
    -------
    torch.Tensor, shape (R, length), int64, on the CPU
    """
    counts = np.asarray(counts, dtype=np.int64)
    shape = (len(counts), int(counts.max(initial=0)))
    if length > shape[1]:
        raise ValueError(f"cannot draw {length} distinct points from {shape[1]}")
    if isinstance(generator, np.random.Generator):
        keys = torch.from_numpy(generator.random(shape))
    else:
        keys = torch.rand(shape, generator=generator, dtype=torch.float64)
    padding = torch.arange(shape[1], dtype=torch.float64)
    keys = torch.where(padding < torch.from_numpy(counts)[:, None], keys, 2.0 + padding)
    return keys.argsort(dim=1)[:, :length]
