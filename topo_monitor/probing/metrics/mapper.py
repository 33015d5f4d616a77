"""The ``"mapper"`` group: the class purity of each block's Mapper graph (ℓ2-norm filter)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from topo_monitor._validation import check
from topo_monitor.probing.metrics.base import Context, MetricGroup, minmax_scale
from topo_monitor.tda.mapper import MapperGraph, mapper_graph

if TYPE_CHECKING:
    from topo_monitor.probing.config import SummaryConfig

__all__ = ["MAPPER", "MapperGroup"]

MAPPER = ("mapper_node_purity", "mapper_point_purity", "mapper_class_purity")
"""The ``"mapper"`` group's per-block metrics, from the Mapper graph of the block's whole cloud
(ℓ2-norm filter; :func:`~topo_monitor.tda.mapper.mapper_graph`): the mean over nodes of
1 / (classes in the node), the mean over points of their nodes' mean, and the mean over classes
of their points' (per class in ``record.per_class``). 1: no node mixes classes; 1/K: every node
holds all K classes."""


class MapperGroup(MetricGroup):
    """Each block's Mapper graph (``record.mapper_graphs``) and its purities."""

    name = "mapper"
    order = 4

    def check(self, config: SummaryConfig) -> None:
        check(
            config.per_class,
            'metrics "mapper" measures how Mapper nodes mix classes: it needs the probe\'s class '
            "labels, per_class=True",
        )

    def block_metrics(self, config: SummaryConfig) -> list[str]:
        return list(MAPPER)

    def profiled(self, metric: str) -> bool:
        return metric == "mapper_point_purity"

    def compute(self, context: Context) -> None:
        graphs = context.mapper_graphs
        with context.timed("mapper"):
            for b, name in enumerate(context.names):
                cloud = context.clouds[name]
                if bool(torch.isfinite(cloud).all()):
                    if context.config.normalize:
                        cloud = minmax_scale(cloud)
                    graphs[name] = _mapper(cloud, context.point_labels[name], context)
                    for k, c in enumerate(context.classes):
                        purity = graphs[name].class_purity.get(c, math.nan)
                        context.store("mapper_class_purity", b, k, purity)
        # of the whole cloud
        context.values["mapper_node_purity"] = [
            graphs[n].mean_node_purity if n in graphs else math.nan for n in context.names
        ]
        context.values["mapper_point_purity"] = [
            graphs[n].mean_point_purity if n in graphs else math.nan for n in context.names
        ]


def _mapper(cloud: torch.Tensor, labels: torch.Tensor, context: Context) -> MapperGraph:
    """The Mapper graph of a block's whole cloud, on at most ``mapper_max_points`` points (drawn
    with the shared generator only when there are more, so the other metrics' draws stay put)."""
    config = context.config
    if len(cloud) > config.mapper_max_points:
        keep = torch.randperm(len(cloud), generator=context.generator)[: config.mapper_max_points]
        cloud, labels = cloud[keep.to(cloud.device)], labels[keep]
    return mapper_graph(cloud, labels, config.mapper_intervals, config.mapper_gain)
