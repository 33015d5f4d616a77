"""Input checks shared by every layer: one-line argument validation, point clouds, diagrams."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


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
