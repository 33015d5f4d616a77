"""The ``"sw"`` group: how the blocks' scale-free H0 diagrams differ — between blocks (the SW
matrix), from the previous measurement (``H0_velocity``) and from the previous block
(``H0_bottleneck_prev_block``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np

from topo_monitor.probing.metrics.base import Context, MetricGroup
from topo_monitor.tda.distances import paired_distances, sliced_wasserstein_matrix

if TYPE_CHECKING:
    from topo_monitor.probing.config import SummaryConfig

__all__ = ["BOTTLENECK", "VELOCITY", "SWGroup"]

VELOCITY = "H0_velocity"
"""The SW distance of a block's scale-free H0 diagrams to the previous measurement's."""

BOTTLENECK = "H0_bottleneck_prev_block"
"""The class-averaged bottleneck distance (``gudhi.bottleneck_distance``) between a block's
scale-free H0 diagrams and the previous block's: ≈ 0 for a block that only moves, rotates or scales
its input's cloud (see :func:`~topo_monitor.analysis.redundant_blocks`). NaN for the first block."""

_BOTTLENECK_ERROR = 1e-4
"""Additive error allowed to gudhi's bottleneck distance, in RMS radii (500 times below the
default redundancy threshold): 2.2× faster than the exact distance on 60 pairs of 300-bar diagrams
(0.16 s against 0.35 s), 7e-5 off at most there."""


class SWGroup(MetricGroup):
    """The class-averaged SW matrix (``record.sw``), ``H0_velocity`` and the bottleneck distance
    of adjacent blocks; all need every class of a block to have a diagram."""

    name = "sw"
    needs_h0 = True
    order = 2

    def block_metrics(self, config: SummaryConfig) -> list[str]:
        return [VELOCITY, BOTTLENECK]

    def compute(self, context: Context) -> None:
        diagrams, names, K = context.diagrams, context.names, len(context.classes)
        directions = context.config.sw_directions
        with context.timed("sw"):
            context.sw = _sw_matrix(diagrams, names, K, directions)
            context.values[VELOCITY] = _velocity(
                context.previous_diagrams, diagrams, names, directions
            )
        with context.timed("bottleneck"):
            context.values[BOTTLENECK] = _adjacent_bottleneck(diagrams, names)


def _sw_matrix(
    diagrams: Mapping[str, list[np.ndarray]], names: list[str], K: int, num_directions: int
) -> list[list[float]]:
    """Class-averaged SW distances between the blocks' scale-free H0 diagrams (NaN if unusable)."""
    usable = [b for b, name in enumerate(names) if name in diagrams]
    total = np.zeros((len(usable), len(usable)))
    for k in range(K):
        total += sliced_wasserstein_matrix([diagrams[names[b]][k] for b in usable], num_directions)
    out = np.full((len(names), len(names)), math.nan)
    out[np.ix_(usable, usable)] = total / K
    return out.tolist()


def _velocity(
    before: Mapping[str, list[np.ndarray]],
    now: Mapping[str, list[np.ndarray]],
    names: list[str],
    num_directions: int,
) -> list[float]:
    """Per block, the class-averaged SW distance between its diagrams before and now."""
    both = [name for name in names if name in before and name in now]
    if not both:
        return [math.nan] * len(names)
    distances = paired_distances(
        [d for name in both for d in before[name]],
        [d for name in both for d in now[name]],
        num_directions,
    )
    K = len(now[both[0]])
    means = dict(zip(both, distances.reshape(len(both), K).mean(axis=1).tolist(), strict=True))
    return [means.get(name, math.nan) for name in names]


def _adjacent_bottleneck(diagrams: Mapping[str, list[np.ndarray]], names: list[str]) -> list[float]:
    """Per block, the class-averaged bottleneck distance (gudhi's) between its diagrams and the
    previous block's; NaN for the first block and beside a block without diagrams."""
    from gudhi import bottleneck_distance

    def mean_distance(before: str, now: str) -> float:
        if before not in diagrams or now not in diagrams:
            return math.nan
        pairs = zip(diagrams[before], diagrams[now], strict=True)
        return float(np.mean([bottleneck_distance(a, b, _BOTTLENECK_ERROR) for a, b in pairs]))

    distances = [mean_distance(before, now) for before, now in pairwise(names)]
    return [math.nan, *distances] if names else []
