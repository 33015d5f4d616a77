"""The ``"e0"`` group: lifespan sums E^i_α of every dimension in ``homology_dims``; β0 at scale."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np

from topo_monitor.probing.metrics.base import Context, MetricGroup
from topo_monitor.tda.persistence import barcode, betti0_at_scale, mean_lifespan, total_persistence

if TYPE_CHECKING:
    from topo_monitor.probing.config import SummaryConfig

__all__ = ["BETA0", "E0Group", "lifespan_names"]

BETA0 = "beta0"
"""β0 at scale (:func:`~topo_monitor.tda.persistence.betti0_at_scale`) of each class's cloud,
averaged: ≈ 1 when every class is one cluster. With ``per_class=False``, of the whole cloud: ≈ the
number of classes when they are separated (lesson 003's "β0 ≈ class count")."""


def lifespan_names(dim: int, alpha: float) -> tuple[str, str, str]:
    """Names of E^dim_α, its scale-free form and the mean lifespan, e.g. ``E0_1``."""
    return f"E{dim}_{alpha:g}", f"E{dim}_{alpha:g}_scaled", f"E{dim}_mean_lifespan"


class E0Group(MetricGroup):
    """E^i_α raw and scale-free and the mean lifespan, per dimension i; β0 at scale. H1 draws
    its subsamples after PHdim's (see :attr:`MetricGroup.order`)."""

    name = "e0"
    needs_h0 = True
    order = 1

    def block_metrics(self, config: SummaryConfig) -> list[str]:
        names = [n for dim in config.homology_dims for n in lifespan_names(dim, config.alpha)]
        return [*names, BETA0]

    def topology_features(self, config: SummaryConfig) -> list[str]:
        return [n for dim in config.homology_dims for n in lifespan_names(dim, config.alpha)[:2]]

    def profiled(self, metric: str) -> bool:
        return re.fullmatch(r"E[01]_[^_]+_scaled", metric) is not None

    @staticmethod
    def is_feature(name: str) -> bool:
        """Whether ``name`` is an E^i_α or its scale-free form, for any α."""
        return re.fullmatch(r"E[01]_[^_]+(_scaled)?", name) is not None

    def compute(self, context: Context) -> None:
        config = context.config
        for b, k, _ in context.groups:
            bars = context.h0_bars[b, k]
            self._store(context, 0, bars, b, k)
            context.store(BETA0, b, k, betti0_at_scale(bars[:, 1]))
        if 1 in config.homology_dims and context.groups:
            with context.timed("h1"):
                for b, k, X in context.groups:
                    bars = barcode(X, 1, config.h1_max_points, context.generator)[1]
                    self._store(context, 1, bars, b, k)

    @staticmethod
    def _store(context: Context, dim: int, bars: np.ndarray, b: int, k: int) -> None:
        raw, scaled, mean = lifespan_names(dim, context.config.alpha)
        scale, alpha = context.scales[b, k], context.config.alpha
        context.store(raw, b, k, total_persistence(bars, alpha))
        context.store(
            scaled, b, k, total_persistence(bars, alpha, scale=scale) if scale > 0 else math.nan
        )
        context.store(mean, b, k, mean_lifespan(bars))
