"""From the reduced point clouds of a network's blocks to one record of topology summaries.

Pure functions: no Lightning, no logging. Each quantity is computed on the cloud of every class and
averaged over classes (Magai & Ayzenberg 2022), or on the whole cloud with ``per_class=False``.
The :class:`EpochRecord` is the single source of truth that every sink (TensorBoard, history file,
``trainer.callback_metrics``, early stopping) reads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from topo_monitor.dimension import ph_dimensions
from topo_monitor.distances import distance_matrix
from topo_monitor.persistence import (
    barcode,
    cloud_scale,
    h0_death_times_many,
    mean_lifespan,
    total_persistence,
)

__all__ = [
    "METRICS",
    "EpochRecord",
    "SummaryConfig",
    "lifespan_names",
    "metric_names",
    "minmax_scale",
    "summarize",
]

METRICS = ("e0", "phdim", "sw")
"""Metric groups: E lifespans (of every dimension in ``homology_dims``), PHdim, the SW matrix."""


@dataclass(frozen=True)
class SummaryConfig:
    """What to compute. See :class:`topo_monitor.TopologyMonitor` for the meaning of each field."""

    metrics: tuple[str, ...] = METRICS
    homology_dims: tuple[int, ...] = (0,)
    alpha: float = 1.0
    per_class: bool = True
    normalize: str | None = None
    h1_max_points: int = 150
    phdim_draws: int = 3
    sw_directions: int = 50


@dataclass
class EpochRecord:
    """Topology of every block at one epoch.

    Attributes
    ----------
    epoch, step : int
    blocks : list of str, length L
        In execution order; the last is the model output.
    depths : list of float, length L
        Relative depth i / L of block i = 1..L.
    values : dict[str, list of float]
        Per metric, the class-averaged value of each block (NaN where it could not be computed).
    per_class : dict[str, list of list of float]
        Per metric, shape (L, K): the value of each block for each of the K classes.
    classes : list of int, length K
    sw : list of list of float or None
        (L, L) sliced-Wasserstein distances between the blocks' scale-free H0 diagrams.
    problems : list of [block, reason]
        Why some values are NaN.
    timings : dict[str, float]
        Seconds spent per stage.
    extras : dict[str, float]
        Test-free baselines measured on the same probe set (``margin``, ``param_norm``), for
        :mod:`topo_monitor.generalization`.
    """

    epoch: int
    step: int
    blocks: list[str]
    depths: list[float]
    values: dict[str, list[float]]
    per_class: dict[str, list[list[float]]] = field(default_factory=dict)
    classes: list[int] = field(default_factory=list)
    sw: list[list[float]] | None = None
    problems: list[list[str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    extras: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready dict: NaN becomes None (null)."""
        return _nan_to_none(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping) -> EpochRecord:
        data = dict(data)
        sw = data.pop("sw", None)
        return cls(**_none_to_nan(data), sw=None if sw is None else _none_to_nan(sw))


def _nan_to_none(obj: object) -> object:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def _none_to_nan(obj: object) -> object:
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: _none_to_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_none_to_nan(v) for v in obj]
    return obj


def minmax_scale(X: torch.Tensor) -> torch.Tensor:
    """Scale every feature to [0, 1] over the cloud (constant features become 0).

    The reference code of Magai & Ayzenberg does this to each layer's activations before
    persistent homology; their lifespans are also halved, so their E is half of ours after it.
    """
    low = X.min(dim=0).values
    span = X.max(dim=0).values - low
    return (X - low) / torch.where(span > 0, span, torch.ones_like(span))


def lifespan_names(dim: int, alpha: float) -> tuple[str, str, str]:
    """Names of E^dim_α, its scale-free form and the mean lifespan, e.g. ``E0_1``."""
    return f"E{dim}_{alpha:g}", f"E{dim}_{alpha:g}_scaled", f"E{dim}_mean_lifespan"


def metric_names(config: SummaryConfig) -> list[str]:
    """Every per-block metric :func:`summarize` reports under ``config``."""
    names: list[str] = []
    if "e0" in config.metrics:
        for dim in config.homology_dims:
            names.extend(lifespan_names(dim, config.alpha))
    if "phdim" in config.metrics:
        names.extend(["PHdim", "PHdim_r2"])
    return names


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def summarize(
    clouds: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    config: SummaryConfig,
    epoch: int = 0,
    step: int = 0,
    generator: torch.Generator | None = None,
) -> EpochRecord:
    """Topology summaries of every block's reduced cloud.

    Parameters
    ----------
    clouds : mapping of block name to torch.Tensor of shape (n, C_block)
        In execution order; row i of every cloud is probe input i.
    labels : torch.Tensor, shape (n,)
    config : SummaryConfig
    generator : torch.Generator, optional
        For PHdim and H1 subsamples; a fresh seed-0 generator by default.

    Returns
    -------
    EpochRecord
        Values that cannot be computed (NaN/Inf activations, a collapsed cloud, too few points)
        are NaN, and ``problems`` says why, per block.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    names = list(clouds)
    L = len(names)
    labels = labels.cpu()
    classes = np.unique(labels.numpy()).tolist() if config.per_class else [-1]
    timings: dict[str, float] = {}
    problems: list[list[str]] = []

    # The clouds to analyse: one per (block, class) of every block with finite activations.
    groups: list[tuple[int, int, torch.Tensor]] = []
    for b, name in enumerate(names):
        cloud = clouds[name]
        bad = ~torch.isfinite(cloud).all(dim=1)
        if bool(bad.any()):
            problems.append(
                [name, f"activations hold NaN or Inf for {int(bad.sum())} of {len(cloud)} inputs"]
            )
            continue
        if config.normalize == "minmax":
            cloud = minmax_scale(cloud)
        for k, c in enumerate(classes):
            members = cloud if c == -1 else cloud[(labels == c).to(cloud.device)]
            groups.append((b, k, members))

    shape = (L, len(classes))
    per_class: dict[str, np.ndarray] = {}

    def store(metric: str, b: int, k: int, value: float) -> None:
        per_class.setdefault(metric, np.full(shape, math.nan))[b, k] = value

    scales = {(b, k): cloud_scale(X) for b, k, X in groups}
    h0_bars: dict[tuple[int, int], np.ndarray] = {}
    if "e0" in config.metrics or "sw" in config.metrics:
        with _timed(timings, "h0"):
            deaths = h0_death_times_many([X for _, _, X in groups]) if groups else []
        for (b, k, _), d in zip(groups, deaths, strict=True):
            d = d.double().cpu().numpy()
            bars = np.column_stack([np.zeros_like(d), d])
            h0_bars[b, k] = bars
            if "e0" in config.metrics:
                _store_lifespans(0, bars, scales[b, k], config.alpha, store, b, k)

    if "phdim" in config.metrics and groups:
        # The H0 bars already give every whole cloud's MST length: PHdim needs not grow it again.
        whole = [h0_bars[b, k][:, 1].sum() for b, k, _ in groups] if h0_bars else None
        with _timed(timings, "phdim"):
            fits = ph_dimensions(
                [X for _, _, X in groups],
                n_draws=config.phdim_draws,
                generator=generator,
                whole_lengths=whole,
            )
        for (b, k, _), fit in zip(groups, fits, strict=True):
            store("PHdim", b, k, fit.value)
            store("PHdim_r2", b, k, fit.r2)
            if fit.reason is not None:
                problems.append([names[b], _class_prefix(classes[k]) + "PHdim: " + fit.reason])

    if "e0" in config.metrics and 1 in config.homology_dims and groups:
        with _timed(timings, "h1"):
            for b, k, X in groups:
                bars = barcode(X, 1, config.h1_max_points, generator)[1]
                _store_lifespans(1, bars, scales[b, k], config.alpha, store, b, k)

    for b, k, _ in groups:
        if scales[b, k] == 0:
            problems.append(
                [
                    names[b],
                    _class_prefix(classes[k]) + "the cloud has collapsed "
                    "to one point (all probe inputs give the same output)",
                ]
            )

    sw = None
    if "sw" in config.metrics:
        with _timed(timings, "sw"):
            sw = _sw_matrix(h0_bars, scales, L, len(classes), config.sw_directions)

    # Mean over classes; NaN if any class is NaN: a partial mean would silently mix classes.
    values = {m: v.mean(axis=1).tolist() for m, v in per_class.items()}
    return EpochRecord(
        epoch=epoch,
        step=step,
        blocks=names,
        depths=[(i + 1) / L for i in range(L)],
        values=values,
        per_class={m: v.tolist() for m, v in per_class.items()},
        classes=[int(c) for c in classes],
        sw=sw,
        problems=problems,
        timings=timings,
    )


def _class_prefix(c: int) -> str:
    return "" if c == -1 else f"class {c}: "


def _store_lifespans(
    dim: int,
    bars: np.ndarray,
    scale: float,
    alpha: float,
    store: Callable[[str, int, int, float], None],
    b: int,
    k: int,
) -> None:
    """E^i_α raw and scale-free, and the mean lifespan, of one diagram."""
    raw, scaled, mean = lifespan_names(dim, alpha)
    store(raw, b, k, total_persistence(bars, alpha))
    store(scaled, b, k, total_persistence(bars, alpha, scale=scale) if scale > 0 else math.nan)
    store(mean, b, k, mean_lifespan(bars))


def _sw_matrix(
    bars: Mapping[tuple[int, int], np.ndarray],
    scales: Mapping[tuple[int, int], float],
    L: int,
    K: int,
    num_directions: int,
) -> list[list[float]]:
    """Class-averaged SW distances between the blocks' scale-free H0 diagrams (NaN if unusable)."""
    total = np.zeros((L, L))
    usable = [b for b in range(L) if all((b, k) in bars and scales[b, k] > 0 for k in range(K))]
    for k in range(K):
        diagrams = [bars[b, k] / scales[b, k] for b in usable]
        total[np.ix_(usable, usable)] += distance_matrix(diagrams, num_directions)
    out = np.full((L, L), math.nan)
    out[np.ix_(usable, usable)] = total[np.ix_(usable, usable)] / K
    return out.tolist()
