"""Input checks shared by every layer: one-line argument validation, numbers, names, point clouds,
diagrams."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import numpy as np
import torch


def check(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``: argument validation in one line."""
    if not condition:
        raise ValueError(message)


def is_positive_int(value: object) -> bool:
    """An int (not a bool) of at least 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def as_real(value: object, name: str) -> float:
    """A real number as a float: a Python or NumPy scalar, or a 0-d tensor or array.

    Booleans, complex numbers, strings and arrays of several values are a ``ValueError``.
    NaN and infinities pass; check them where they matter.
    """
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{name} must be a real number (a 0-d tensor or array will do), got {value!r}"
        )
    return float(value)


def as_positive(value: object, name: str) -> float:
    """:func:`as_real`, and positive and finite."""
    number = as_real(value, name)
    check(
        number > 0 and math.isfinite(number),
        f"{name} must be a positive finite number, got {value!r}",
    )
    return number


def as_names(value: Iterable[str], name: str) -> tuple[str, ...]:
    """A sequence of names as a tuple of str; one string (a sequence of letters) is an error."""
    if isinstance(value, str):
        raise ValueError(
            f"{name} must be a sequence of names, not one string: write {name}=({value!r},)"
        )
    check(isinstance(value, Iterable), f"{name} must be a sequence of names, got {value!r}")
    names = tuple(value)
    check(all(isinstance(n, str) for n in names), f"{name} must hold names (str), got {value!r}")
    return names


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
    # A finite sum proves every value finite (one reduction); an infinite one may be overflow.
    # Read as a Python float: 2 µs a cloud where a tensor test took 6.5, which counts for a probe
    # of a thousand classes.
    if not math.isfinite(X.sum().item()) and not bool(torch.isfinite(X).all()):
        bad = int((~torch.isfinite(X)).any(dim=1).sum())
        raise ValueError(f"{name} holds NaN or infinite values ({bad} of {X.shape[0]} points)")
    return X


def as_diagram(
    bars: np.ndarray | torch.Tensor | Sequence[Sequence[float]], name: str = "bars"
) -> np.ndarray:
    """One persistence diagram as a float64 array of shape (k, 2) of finite (birth, death) pairs.

    Raises
    ------
    ValueError
        If ``bars`` is several diagrams (such as the list that ``barcode(X)`` returns, one diagram
        per homology dimension), is not of shape (k, 2), holds infinite or NaN values, or has a
        bar that dies before it is born.
    """
    if isinstance(bars, torch.Tensor):
        bars = bars.detach().cpu().numpy()
    if isinstance(bars, (list, tuple)) and any(_ndim(item) == 2 for item in bars):
        raise _several_diagrams(name, "a list of diagrams")
    arr = np.asarray(bars, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[2] == 2:
        raise _several_diagrams(name, f"{arr.shape[0]} diagrams stacked, shape {arr.shape}")
    if arr.size == 0:
        return np.empty((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(
            f"{name} must have shape (k, 2) of (birth, death) pairs, got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(
            f"{name} holds infinite or NaN values: drop infinite bars first "
            "(topo_monitor.tda.barcode returns finite bars only)"
        )
    backwards = np.flatnonzero(arr[:, 1] < arr[:, 0])
    if backwards.size:
        birth, death = arr[backwards[0]]
        raise ValueError(
            f"{name} has {backwards.size} bar(s) that die before they are born, e.g. "
            f"(birth, death) = ({birth:g}, {death:g}) at row {backwards[0]}: a diagram holds "
            "(birth, death) pairs with death >= birth"
        )
    return arr


def _ndim(item: object) -> int | None:
    """``np.ndim`` of an item of a sequence, or None for a ragged one."""
    try:
        return np.ndim(item)
    except ValueError:
        return None


def _several_diagrams(name: str, what: str) -> ValueError:
    return ValueError(
        f"{name} is {what}, where one diagram is expected: pass one homology dimension's "
        "diagram, e.g. barcode(X)[0] for H0, not the whole barcode(X)"
    )
