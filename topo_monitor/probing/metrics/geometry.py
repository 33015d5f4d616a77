"""The ``"geometry"`` group: the baselines a topological measure must beat, on each block's whole
cloud (Davies–Bouldin index, NC1, effective rank)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from topo_monitor.probing.metrics.base import Context, MetricGroup
from topo_monitor.tda.geometry import GEOMETRY, davies_bouldin, effective_rank, neural_collapse_nc1

if TYPE_CHECKING:
    from topo_monitor.probing.config import SummaryConfig

__all__ = ["GeometryGroup"]


class GeometryGroup(MetricGroup):
    """Each block's whole cloud, every point labelled (NaN for a non-finite cloud)."""

    name = "geometry"
    order = 5

    def block_metrics(self, config: SummaryConfig) -> list[str]:
        return list(GEOMETRY)

    def baseline_features(self, config: SummaryConfig) -> list[str]:
        return list(GEOMETRY)

    def compute(self, context: Context) -> None:
        values: dict[str, list[float]] = {name: [] for name in GEOMETRY}
        with context.timed("geometry"):
            for name in context.names:
                X, labels = context.clouds[name], context.point_labels[name]
                finite = bool(torch.isfinite(X).all())
                values["davies_bouldin"].append(davies_bouldin(X, labels) if finite else math.nan)
                values["nc1"].append(neural_collapse_nc1(X, labels) if finite else math.nan)
                values["effective_rank"].append(effective_rank(X) if finite else math.nan)
        context.values.update(values)
