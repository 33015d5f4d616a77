"""What every metric group is, and the context the groups of one measurement share.

A group (``"e0"``, ``"phdim"``, ...) declares its metric names for a configuration, what it needs
from the shared :class:`Context` (the clouds split by block and class, their scales, the H0 bars,
the scale-free diagrams, the previous measurement's diagrams), and computes its values and its
problems into that context. The context computes each shared quantity once, on first use.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from topo_monitor.probing.problems import Problem
from topo_monitor.tda.persistence import cloud_scale, h0_death_times_many

if TYPE_CHECKING:
    from topo_monitor.probing.config import SummaryConfig
    from topo_monitor.probing.record import TopologyRecord
    from topo_monitor.tda.mapper import MapperGraph

__all__ = ["Context", "MetricGroup", "minmax_scale"]


class MetricGroup:
    """One metric group: its names, its needs, its computation.

    Subclasses set :attr:`name`, :attr:`needs_h0` and :attr:`order`, and implement
    :meth:`block_metrics` and :meth:`compute`; the rest has defaults. Register an instance with
    :func:`~topo_monitor.probing.metrics.register`.
    """

    name: ClassVar[str]
    needs_h0: ClassVar[bool] = False
    """Whether the group reads the H0 bars (``Context.h0_bars``); other groups may then reuse
    them (PHdim takes each whole cloud's MST length from them)."""
    order: ClassVar[int] = 0
    """When the group computes among the selected ones: the groups that draw from the shared
    random generator keep the order in which they always drew, so records stay reproducible."""

    def check(self, config: SummaryConfig) -> None:
        """Raise ValueError for options this group cannot work with."""

    def block_metrics(self, config: SummaryConfig) -> list[str]:
        """The per-block metrics it reports under ``config`` (``record.values``)."""
        return []

    def network_metrics(self, config: SummaryConfig) -> list[str]:
        """The per-network values it reports under ``config`` (``record.network``)."""
        return []

    def topology_features(self, config: SummaryConfig) -> list[str]:
        """Its metrics that are candidate features of the generalization predictor."""
        return []

    def baseline_features(self, config: SummaryConfig) -> list[str]:
        """Its metrics that are the predictor's non-topological baselines."""
        return []

    def profiled(self, metric: str) -> bool:
        """Whether ``metric`` is one of its metrics worth a depth profile: comparable across
        blocks, whose activations have different scales (scale-free, or a dimension)."""
        return False

    def compute(self, context: Context) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<metric group {self.name!r}>"


def minmax_scale(X: torch.Tensor) -> torch.Tensor:
    """Scale every feature to [0, 1] over the cloud (constant features become 0).

    The reference code of Magai & Ayzenberg does this to each layer's activations before
    persistent homology; their lifespans are also halved, so their E is half of ours after it.
    """
    low = X.min(dim=0).values
    span = X.max(dim=0).values - low
    return (X - low) / torch.where(span > 0, span, torch.ones_like(span))


class Context:
    """The clouds of one measurement, what several groups need, and what the groups produce.

    Parameters
    ----------
    clouds : mapping of block name to torch.Tensor of shape (n_block, C_block)
    labels : torch.Tensor, shape (n,)
        The probe inputs' labels.
    config : SummaryConfig
    generator : torch.Generator
        Shared by the groups that draw subsamples, in :attr:`MetricGroup.order`.
    previous : TopologyRecord or None
        The previous measurement: its scale-free H0 diagrams (``previous_diagrams``) are used
        when it measured the same classes.
        The scale-free H0 diagrams of the previous measurement of the same probe, per class.
    inputs : mapping of block name to torch.Tensor of int, shape (n_block,)
        For blocks with several points per input: the probe input of each row.
    wants_h0 : bool
        Whether a selected group needs the H0 bars (then the others may reuse them).
    """

    def __init__(
        self,
        clouds: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        config: SummaryConfig,
        generator: torch.Generator,
        previous: TopologyRecord | None,
        inputs: Mapping[str, torch.Tensor],
        wants_h0: bool,
    ) -> None:
        self.config = config
        self.generator = generator
        self.clouds = clouds
        self.names = list(clouds)
        self.labels = labels
        self.point_labels = {
            name: labels[inputs[name]] if name in inputs else labels for name in self.names
        }
        self.classes: list[int] = (
            [int(c) for c in np.unique(labels.numpy())] if config.per_class else [-1]
        )
        same_probe = previous is not None and previous.classes == self.classes
        self.previous_diagrams: Mapping[str, list[np.ndarray]] = (
            previous.diagrams if same_probe and previous.diagrams else {}  # type: ignore[union-attr]
        )
        self.wants_h0 = wants_h0
        self.problems: list[Problem] = []
        self.timings: dict[str, float] = {}
        self.values: dict[str, list[float]] = {}
        self.network: dict[str, float] = {}
        self.curves: dict[str, list[float]] = {}
        self.sw: list[list[float]] | None = None
        self.mapper_graphs: dict[str, MapperGraph] = {}
        self._per_class: dict[str, np.ndarray] = {}

        # One cloud per (block, class) of every block with finite activations; ``finite`` holds
        # each such block's cloud with one point per input (the functional graph's).
        self.groups: list[tuple[int, int, torch.Tensor]] = []
        self.finite: list[torch.Tensor] = []
        for b, name in enumerate(self.names):
            cloud = clouds[name]
            bad = ~torch.isfinite(cloud).all(dim=1)
            if bool(bad.any()):
                self.problem(
                    b,
                    None,
                    "nonfinite_activations",
                    f"activations hold NaN or Inf for {int(bad.sum())} of {len(cloud)} points",
                )
                continue
            self.finite.append(
                _input_means(cloud, inputs[name], len(labels)) if name in inputs else cloud
            )
            if config.normalize == "minmax":
                cloud = minmax_scale(cloud)
            for k, c in enumerate(self.classes):
                members = (
                    cloud if c == -1 else cloud[(self.point_labels[name] == c).to(cloud.device)]
                )
                self.groups.append((b, k, members))
        self.scales = {(b, k): cloud_scale(X) for b, k, X in self.groups}
        for b, k, _ in self.groups:
            if self.scales[b, k] == 0:
                self.problem(
                    b,
                    None,
                    "collapsed",
                    "the cloud has collapsed to one point (all probe inputs give the same output)",
                    k,
                )

    @property
    def shape(self) -> tuple[int, int]:
        """(blocks, classes) of the per-class tables."""
        return len(self.names), len(self.classes)

    def store(self, metric: str, b: int, k: int, value: float) -> None:
        """The value of ``metric`` for block ``b`` and class ``k`` (NaN until stored)."""
        self._per_class.setdefault(metric, np.full(self.shape, math.nan))[b, k] = value

    @property
    def per_class(self) -> dict[str, np.ndarray]:
        return self._per_class

    def problem(
        self, b: int | str, metric: str | None, cause: str, detail: str, k: int | None = None
    ) -> None:
        """Record why a value is missing, for block ``b`` (an index or a name) and class ``k``."""
        block = self.names[b] if isinstance(b, int) else b
        label = None if k is None or self.classes[k] == -1 else self.classes[k]
        self.problems.append(Problem(block, metric, cause, detail, label))

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    @cached_property
    def h0_bars(self) -> dict[tuple[int, int], np.ndarray]:
        """``(n, 2)`` H0 bars (births 0) of every (block, class) cloud, in float64."""
        with self.timed("h0"):
            deaths = h0_death_times_many([X for _, _, X in self.groups]) if self.groups else []
        bars = {}
        for (b, k, _), d in zip(self.groups, deaths, strict=True):
            d = d.double().cpu().numpy()
            bars[b, k] = np.column_stack([np.zeros_like(d), d])
        return bars

    @cached_property
    def diagrams(self) -> dict[str, list[np.ndarray]]:
        """Per block whose every class has H0 bars and a positive scale, the scale-free H0
        diagram of each class (empty when no selected group needs H0)."""
        if not self.wants_h0:
            return {}
        K = len(self.classes)
        return {
            name: [self.h0_bars[b, k] / self.scales[b, k] for k in range(K)]
            for b, name in enumerate(self.names)
            if all((b, k) in self.h0_bars and self.scales[b, k] > 0 for k in range(K))
        }


def _input_means(cloud: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
    """``(n, C)``: the mean of each input's points, from a cloud whose row r is a point of input
    ``rows[r]`` (every input of ``0, ..., n - 1`` having some)."""
    rows = rows.to(cloud.device)
    sums = torch.zeros(n, cloud.shape[1], dtype=cloud.dtype, device=cloud.device)
    counts = torch.bincount(rows, minlength=n).to(cloud.dtype)
    return sums.index_add_(0, rows, cloud) / counts[:, None]
